"""The ciphers of transforms/crypto against published test vectors: AES-CBC (NIST SP 800-38A F.2),
AES-GCM (McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 2, 3, 4, 14, as in
NIST's GCM validation), SM4 (GB/T 32907-2016 appendix A, both examples) and SM4-GCM (RFC 8998 A.1)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from transforms.crypto import ciphers

H = bytes.fromhex

# SP 800-38A F.2.1 / F.2.5: CBC-AES128 and CBC-AES256, four blocks
SP800_38A_PLAIN = H("6bc1bee22e409f96e93d7e117393172a" "ae2d8a571e03ac9c9eb76fac45af8e51"
                    "30c81c46a35ce411e5fbc1191a0a52ef" "f69f2445df4f9b17ad2b417be66c3710")
SP800_38A_IV = H("000102030405060708090a0b0c0d0e0f")
CBC_VECTORS = [
    ("2b7e151628aed2a6abf7158809cf4f3c",
     "7649abac8119b246cee98e9b12e9197d" "5086cb9b507219ee95db113a917678b2"
     "73bed6b8e3c1743b7116e69e22229516" "3ff1caa1681fac09120eca307586e1a7"),
    ("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
     "f58c4c04d6e5f1ba779eabfb5f7bfbd6" "9cfc4e967edb808d679f777bc6702c7d"
     "39f23369a9d9bacfa530e26304231461" "b2eb05e2c39be9fcda6c19078c6a9d1b"),
]

# GCM specification test cases: key, iv, plaintext, aad, ciphertext, tag
GCM_VECTORS = [
    ("00000000000000000000000000000000", "000000000000000000000000", "00000000000000000000000000000000", "",
     "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf"),
    ("feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255", "",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985", "4d5c2af327cd64a62cf35abd2ba6fab4"),
    ("feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091", "5bc94fbc3221a5db94fae95ae7121a47"),
    ("0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
     "00000000000000000000000000000000", "",
     "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"),
]

# GB/T 32907-2016 appendix A: key = plaintext; example 1 once, example 2 iterated 1,000,000 times
SM4_KEY = H("0123456789abcdeffedcba9876543210")
SM4_ONCE = H("681edf34d206965e86b3e94f536e4246")
SM4_MILLION = H("595298c7c6fd271f0402f804c33d3f66")

# RFC 8998 appendix A.1: SM4-GCM
SM4_GCM = ("0123456789abcdeffedcba9876543210", "00001234567800000000abcd",
           "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd"
           "eeeeeeeeeeeeeeeeffffffffffffffffeeeeeeeeeeeeeeeeaaaaaaaaaaaaaaaa",
           "feedfacedeadbeeffeedfacedeadbeefabaddad2",
           "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735"
           "d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d", "83de3541e4c2b58177e065a9bf7b62ec")


@pytest.mark.parametrize(("key", "expected"), CBC_VECTORS)
def test_aes_cbc_sp800_38a(key: str, expected: str) -> None:
    out = ciphers.encrypt("aes", "cbc", H(key), SP800_38A_IV, SP800_38A_PLAIN)
    # PKCS#7 of a whole number of blocks adds one block of 0x10: the vector's blocks come first
    assert out[:64] == H(expected) and len(out) == 80
    assert ciphers.decrypt("aes", "cbc", H(key), SP800_38A_IV, out) == SP800_38A_PLAIN


@pytest.mark.parametrize(("key", "iv", "plain", "aad", "ct", "tag"), GCM_VECTORS)
def test_aes_gcm_spec_vectors(key: str, iv: str, plain: str, aad: str, ct: str, tag: str) -> None:
    out = ciphers.encrypt("aes", "gcm", H(key), H(iv), H(plain), H(aad) or None)
    assert out == H(ct) + H(tag)
    assert ciphers.decrypt("aes", "gcm", H(key), H(iv), out, H(aad) or None) == H(plain)


def test_sm4_gbt32907_example_1() -> None:
    # CBC with a zero IV: the first block is the bare block cipher of the standard's example
    out = ciphers.encrypt("sm4", "cbc", SM4_KEY, bytes(16), SM4_KEY)
    assert out[:16] == SM4_ONCE
    assert ciphers.decrypt("sm4", "cbc", SM4_KEY, bytes(16), out) == SM4_KEY


def test_sm4_gbt32907_example_2_million_rounds() -> None:
    enc = Cipher(algorithms.SM4(SM4_KEY), modes.ECB()).encryptor()  # the same primitive ciphers.py uses
    block = SM4_KEY
    for _ in range(1_000_000):
        block = enc.update(block)
    assert block == SM4_MILLION


def test_sm4_gcm_rfc8998() -> None:
    key, iv, plain, aad, ct, tag = (H(x) for x in SM4_GCM)
    out = ciphers.encrypt("sm4", "gcm", key, iv, plain, aad)
    assert out == ct + tag
    assert ciphers.decrypt("sm4", "gcm", key, iv, out, aad) == plain


@pytest.mark.parametrize(("cipher", "mode"), [("aes", "gcm"), ("aes", "cbc"), ("sm4", "gcm"), ("sm4", "cbc")])
def test_tampered_or_truncated_ciphertext_is_a_cipher_error(cipher: str, mode: str) -> None:
    key, iv = bytes(range(16)), bytes(ciphers.iv_size(mode))
    out = bytearray(ciphers.encrypt(cipher, mode, key, iv, b"13800138000"))
    out[-1] ^= 1
    with pytest.raises(ciphers.CipherError):
        # CBC: the flipped byte garbles the whole last block, so its padding (key, IV and text fixed) is wrong
        ciphers.decrypt(cipher, mode, key, iv, bytes(out))
    with pytest.raises(ciphers.CipherError):
        ciphers.decrypt(cipher, mode, key, iv, bytes(out[:7]))

"""Per-field encryption by partner contract (CATALOGUE D.2.1–D.2.4): AES or SM4 in GCM or CBC, one
data key per request and its response, wrapped with RSA (OAEP / PKCS#1 v1.5). The contract model is
``hub.cryptocontract``; keys come through ``transforms.crypto.keys``."""

from transforms.crypto.fields import (
    Session,
    decrypt_inbound,
    decrypt_response,
    decrypt_value,
    encrypt_request,
    encrypt_response,
    encrypt_value,
)
from transforms.crypto.keys import ContractKeys, KeyProvider, keys_for

__all__ = ["ContractKeys", "KeyProvider", "Session", "decrypt_inbound", "decrypt_response", "decrypt_value",
           "encrypt_request", "encrypt_response", "encrypt_value", "keys_for"]

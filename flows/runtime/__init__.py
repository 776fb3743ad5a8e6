"""The v2 flow runtime: the pure engine (flows/graph) wired to Kafka and MongoDB.

One source of truth: the order document holds the engine state *and* the outbox of commands not yet
carried out, written in one single-document write with a fresh revision token; the relay carries the
commands out and marks them sent; durable timers live in the same document and fire through a leased
sweep. docs/flows.md says why and how.
"""

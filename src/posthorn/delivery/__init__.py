"""Delivery: what the queue runner hands messages to.

- `local` (`LocalDelivery`): the MDA — aliases, catch-all, plus-addressing, loop checks, quota,
  one `MailStore.deliver` per message.
- `trace`: the per-copy trace fields (Return-Path, Delivered-To, Received).

Delivery never imports the SMTP server (DESIGN.md "Ownership"); it reads the queue's records.
"""

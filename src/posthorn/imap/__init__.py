"""IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) server: pure grammar, session, asyncio shell."""

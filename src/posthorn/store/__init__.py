"""The message store: the `MailStore` contract (`base`), the change feed (`changes`) and its
implementations (`sqlite`, embedded; `postgres`, scale-out)."""

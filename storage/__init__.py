"""The encrypted store: age v1 files, the clip store, its index, retention, keys and audit log.

The package is split in two halves so the recorder can be proven write-only:

* the encrypting half (`storage.age.writer`, `storage.age.recipients`, `storage.recipients`,
  `storage.clipwriter`, `storage.index`, `storage.retention`, `storage.audit`) needs only
  public keys;
* the decrypting half (`storage.age.reader`, `storage.age.identities`, `storage.keyring`,
  `storage.household`, `storage.clipreader`) needs an identity, and `camera` never imports it
  (a test enforces it).

Nothing is imported here on purpose: importing `storage` must not pull in either half.
"""

"""paxoi.security: TLS between servers and clients, certificates, and client auth.

- `tls`: SSL contexts (TLS 1.2+, the cluster CA only) and the identities certificates
  carry (``paxoi://<cluster>/node/<id>``, ``paxoi://<cluster>/client/<name>``);
- `certs`: the cluster CA and node/client certificates (`paxoi certs`);
- `tokens`: client tokens, kept by servers as hashes;
- `auth`: a server's admission check per connection (`Gate`) and a client's options
  from a configuration (`client_options`).

See docs/security.md for the threat model and how to set a cluster up.
"""

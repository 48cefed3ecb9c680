#!/usr/bin/env python3
"""Bulk-provisions the benchmark subscribers u00000000..u{N-1}@DOMAIN with one
password into a Voxline SQLite subscriber database whose schema the node has
created (`voxline subscriber add` of one user does that). HA1 values as the
auth crate stores them: hex MD5 and SHA-256 of "user:realm:password", realm =
domain. Usage: provision.py DB N [DOMAIN] [PASSWORD]"""
import hashlib
import sqlite3
import sys
import time

db, n = sys.argv[1], int(sys.argv[2])
domain = sys.argv[3] if len(sys.argv) > 3 else "localhost"
password = sys.argv[4] if len(sys.argv) > 4 else "secret"
now = int(time.time())
con = sqlite3.connect(db)
rows = []
for i in range(n):
    user = f"u{i:08d}"
    a1 = f"{user}:{domain}:{password}".encode()
    rows.append((user, domain, hashlib.md5(a1).hexdigest(), hashlib.sha256(a1).hexdigest(), now, now))
con.executemany(
    "INSERT OR IGNORE INTO subscriber (username, domain, ha1_md5, ha1_sha256, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?)",
    rows,
)
con.commit()
print(con.execute("SELECT COUNT(*) FROM subscriber").fetchone()[0])

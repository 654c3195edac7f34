#!/usr/bin/python
"""Say which service databases already hold their whole declared state, in one connection.

roles/postgres/tasks/databases.yml declares, per entry of postgres_databases, an owner role
(postgresql_user: LOGIN,NOSUPERUSER,NOCREATEDB,NOCREATEROLE and its password), a database owned by
it in the declared encoding (postgresql_db), CONNECT and TEMPORARY revoked from PUBLIC and granted
to the owner (two postgresql_privs tasks). Each of those is a remote round trip per entry on every
converge. This module reads the catalogs once and returns the entries for which all four tasks
would report unchanged (`current`), so the role loops them over the others only. It never changes
anything. When in doubt it says "not current": the real tasks then run and decide, as before.

The password check follows postgresql_user (community.postgresql 4.x): a SCRAM-SHA-256 verifier
is checked by computing StoredKey and ServerKey from the declared password (RFC 5802/7677, as
PostgreSQL does); an md5 verifier counts only while the server's password_encryption is md5
(with scram-sha-256, postgresql_user rewrites an md5 password). A declared password that is
itself a verifier must equal the stored one. Non-ASCII passwords (SASLprep) are left to the tasks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: postgres_databases_state
short_description: Report which service databases (owner role, database, privileges) are as declared
description:
  - Read-only. One connection to the C(postgres) database; supports check mode.
  - An entry is current when its owner role exists with LOGIN, NOSUPERUSER, NOCREATEDB and
    NOCREATEROLE, its stored password verifies against the declared one, the database exists
    owned by it in the declared encoding, PUBLIC has neither CONNECT nor TEMPORARY on it and the
    owner holds both explicitly in the database's ACL.
  - If the server cannot be reached the module fails, except in check mode, where it returns
    current=[] (the real tasks then run as they would without it).
options:
  login_host:
    description: Host of the server.
    type: str
    default: 127.0.0.1
  login_port:
    description: Port of the server.
    type: int
    default: 5432
  login_user:
    description: A superuser (pg_authid is readable by superusers only).
    type: str
    default: postgres
  login_password:
    description: Its password.
    type: str
    no_log: true
  databases:
    description: The declared entries.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Database name.
        type: str
        required: true
      owner:
        description: Owner role name.
        type: str
        required: true
      password:
        description: The owner's password (plain text, or a SCRAM/md5 verifier).
        type: str
        required: true
        no_log: true
      encoding:
        description: Declared encoding of the database.
        type: str
        default: UTF8
requirements:
  - psycopg2 on the managed host (python3-psycopg2)
"""

EXAMPLES = r"""
- name: Read which service databases are already as declared
  postgres_databases_state:
    login_host: 127.0.0.1
    login_port: 5432
    login_user: postgres
    login_password: "{{ postgres_superuser_password }}"
    databases:
      - name: n8n
        owner: n8n
        password: "{{ vault_n8n_postgres_password }}"
        encoding: UTF8
  register: postgres_databases_current
"""

RETURN = r"""
current:
  description: Names of the databases whose whole declared state already holds.
  type: list
  elements: str
  returned: always
reasons:
  description: Database name to a short reason why it is not current (never a secret).
  type: dict
  returned: always
"""

SCRAM_RE = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$")
MD5_RE = re.compile(r"^md5[0-9a-f]{32}$")

ROLES_SQL = (
    "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolpassword"
    " FROM pg_authid WHERE rolname = ANY(%s)"
)
# One row per database: owner's name, encoding, whether its ACL is explicit, and which of
# CONNECT/TEMPORARY PUBLIC holds and the owner holds as granted by itself.
DATABASES_SQL = """
SELECT d.datname,
       pg_get_userbyid(d.datdba) AS owner,
       pg_encoding_to_char(d.encoding) AS encoding,
       d.datacl IS NOT NULL AS explicit_acl,
       COALESCE(ARRAY(SELECT a.privilege_type FROM aclexplode(d.datacl) a
                      WHERE a.grantee = 0 AND a.privilege_type IN ('CONNECT', 'TEMPORARY')
                      ORDER BY 1), '{}') AS public_privs,
       COALESCE(ARRAY(SELECT a.privilege_type FROM aclexplode(d.datacl) a
                      WHERE a.grantee = d.datdba AND a.grantor = d.datdba
                        AND a.privilege_type IN ('CONNECT', 'TEMPORARY')
                      ORDER BY 1), '{}') AS owner_privs
  FROM pg_database d WHERE d.datname = ANY(%s)
"""


def _text(value):
    """Text as str: on a SQL_ASCII server (the postgres database of the lab image) the driver may
    hand names and rolpassword back as bytes, and an array as its '{...}' literal."""
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_text(v) for v in value]
    return value


def scram_verifies(verifier: str, password: str) -> bool:
    """Whether a SCRAM-SHA-256 verifier (pg_authid.rolpassword) was made from `password`."""
    m = SCRAM_RE.match(verifier or "")
    if not m:
        return False
    iterations, salt, stored_key, server_key = (
        int(m.group(1)),
        base64.b64decode(m.group(2)),
        base64.b64decode(m.group(3)),
        base64.b64decode(m.group(4)),
    )
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    ok_stored = hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key)
    ok_server = hmac.compare_digest(hmac.new(salted, b"Server Key", hashlib.sha256).digest(), server_key)
    return ok_stored and ok_server


def password_reason(stored: str | None, password: str, user: str, encryption: str) -> str | None:
    """None when postgresql_user would leave the password alone, else why not (no secret)."""
    if password == "":
        return None if stored is None else "a password is set, none declared"
    if stored is None:
        return "no password set"
    if SCRAM_RE.match(password) or MD5_RE.match(password):
        return None if hmac.compare_digest(password, stored) else "password differs"
    if not password.isascii():
        return "non-ASCII password: left to postgresql_user"
    if SCRAM_RE.match(stored):
        return None if scram_verifies(stored, password) else "password differs"
    if MD5_RE.match(stored):
        if encryption != "md5":
            return "md5 password while password_encryption is " + encryption
        want = "md5" + hashlib.md5((password + user).encode("utf-8")).hexdigest()  # noqa: S324 (PostgreSQL's md5)
        return None if hmac.compare_digest(want, stored) else "password differs"
    return "password stored in an unknown form"


def evaluate(declared: list[dict], roles: dict[str, dict], databases: dict[str, dict], encryption: str):
    """(current names, {name: reason}) from the catalog rows, keyed by role and database name."""
    current: list[str] = []
    reasons: dict[str, str] = {}
    for entry in declared:
        name, owner = entry["name"], entry["owner"]
        encoding = entry.get("encoding") or "UTF8"
        role = roles.get(owner)
        db = databases.get(name)
        reason = None
        if role is None:
            reason = f"role {owner} missing"
        elif not role["rolcanlogin"]:
            reason = f"role {owner} cannot log in"
        elif role["rolsuper"] or role["rolcreatedb"] or role["rolcreaterole"]:
            reason = f"role {owner} has SUPERUSER, CREATEDB or CREATEROLE"
        else:
            why = password_reason(_text(role["rolpassword"]), entry["password"], owner, encryption)
            if why:
                reason = f"role {owner}: {why}"
        if reason is None:
            if db is None:
                reason = "database missing"
            elif db["owner"] != owner:
                reason = f"owned by {db['owner']}"
            elif db["encoding"].replace("-", "").upper() != encoding.replace("-", "").upper():
                reason = f"encoding {db['encoding']}"
            elif not db["explicit_acl"]:
                reason = "default privileges (PUBLIC may connect)"
            elif db["public_privs"]:
                reason = "PUBLIC has " + ", ".join(db["public_privs"])
            elif sorted(db["owner_privs"]) != ["CONNECT", "TEMPORARY"]:
                reason = f"{owner} lacks an explicit CONNECT or TEMPORARY grant"
        if reason is None:
            current.append(name)
        else:
            reasons[name] = reason
    return current, reasons


def read_catalogs(conn, declared: list[dict]):
    """(roles, databases, password_encryption) from a DB-API connection (psycopg2 or psycopg 3)."""
    cur = conn.cursor()
    owners = sorted({e["owner"] for e in declared})
    names = sorted({e["name"] for e in declared})
    cur.execute("SHOW password_encryption")
    encryption = _text(cur.fetchone()[0])
    cur.execute(ROLES_SQL, (owners,))
    cols = [c[0] for c in cur.description]
    roles = {}
    for row in cur.fetchall():
        rec = {k: _text(v) for k, v in zip(cols, row)}
        roles[rec["rolname"]] = rec
    cur.execute(DATABASES_SQL, (names,))
    cols = [c[0] for c in cur.description]
    databases = {}
    for row in cur.fetchall():
        rec = {k: _text(v) for k, v in zip(cols, row)}
        for key in ("public_privs", "owner_privs"):  # psycopg2 may hand back a '{...}' string
            value = rec[key]
            if isinstance(value, str):
                value = [v for v in value.strip("{}").split(",") if v]
            rec[key] = list(value or [])
        databases[rec["datname"]] = rec
    cur.close()
    return roles, databases, encryption


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "login_host": {"type": "str", "default": "127.0.0.1"},
            "login_port": {"type": "int", "default": 5432},
            "login_user": {"type": "str", "default": "postgres"},
            "login_password": {"type": "str", "no_log": True},
            "databases": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "owner": {"type": "str", "required": True},
                    "password": {"type": "str", "required": True, "no_log": True},
                    "encoding": {"type": "str", "default": "UTF8"},
                },
            },
        },
        supports_check_mode=True,
    )
    p = module.params
    declared = p["databases"]
    if not declared:
        module.exit_json(changed=False, current=[], reasons={})
    try:
        import psycopg2
    except ImportError:
        module.fail_json(msg="postgres_databases_state needs psycopg2 on the host (python3-psycopg2)")
    try:
        conn = psycopg2.connect(
            host=p["login_host"],
            port=p["login_port"],
            user=p["login_user"],
            password=p["login_password"],
            dbname="postgres",
            connect_timeout=10,
        )
    except psycopg2.Error as exc:
        msg = f"cannot connect to PostgreSQL at {p['login_host']}:{p['login_port']} as {p['login_user']}: "
        msg += str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if module.check_mode:
            module.exit_json(
                changed=False, current=[], reasons={e["name"]: "server not reachable" for e in declared}, msg=msg
            )
        module.fail_json(msg=msg)
    try:
        conn.set_session(readonly=True, autocommit=True)
        roles, databases, encryption = read_catalogs(conn, declared)
    except psycopg2.Error as exc:
        module.fail_json(msg=f"reading the catalogs failed: {str(exc).strip()}")
    finally:
        conn.close()
    current, reasons = evaluate(declared, roles, databases, encryption)
    module.exit_json(changed=False, current=current, reasons=reasons)


if __name__ == "__main__":
    main()

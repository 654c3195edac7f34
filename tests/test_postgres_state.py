"""The precheck of roles/postgres/tasks/databases.yml (plugins/modules/postgres_databases_state.py):
an entry is `current`, and its four community.postgresql tasks skipped, only when each of them would
report unchanged. The fast tests hold the verdicts to catalog rows and to a SCRAM verifier PostgreSQL
produced; the lab-marked ones read a real server's catalogs after the same statements the tasks run."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from labenv import ROOT, load_module, postgres_container

state = load_module(ROOT / "plugins" / "modules" / "postgres_databases_state.py")

# Made by PostgreSQL 16 (the lab image): CREATE ROLE app LOGIN PASSWORD 'app-secret' under
# password_encryption scram-sha-256, read back from pg_authid.rolpassword.
PG_VERIFIER = (
    "SCRAM-SHA-256$4096:k7hvRAkLFSfY1TwPAWqSDw==$"
    "VChTnYFAw0qru/+VZn0iC2J+wldxVvuy6kPerxcOJKs=:"
    "VZjFzpYCA7PtpOFHUBw6aRe15oDPgsujOgDSM3EEORo="
)
PASSWORD = "app-secret"
DECLARED = [{"name": "app", "owner": "app", "password": PASSWORD, "encoding": "UTF8"}]


def role(**attrs: object) -> dict:
    return {
        "rolname": "app",
        "rolcanlogin": True,
        "rolsuper": False,
        "rolcreatedb": False,
        "rolcreaterole": False,
        "rolpassword": PG_VERIFIER,
        **attrs,
    }


def database(**attrs: object) -> dict:
    return {
        "datname": "app",
        "owner": "app",
        "encoding": "UTF8",
        "explicit_acl": True,
        "public_privs": [],
        "owner_privs": ["CONNECT", "TEMPORARY"],
        **attrs,
    }


def verdict(roles: dict, dbs: dict, encryption: str = "scram-sha-256", declared: list | None = None):
    return state.evaluate(declared or DECLARED, roles, dbs, encryption)


def test_a_scram_verifier_postgresql_made_verifies_its_password_only() -> None:
    assert state.scram_verifies(PG_VERIFIER, PASSWORD)
    assert not state.scram_verifies(PG_VERIFIER, PASSWORD + "x")
    assert not state.scram_verifies("md5" + "0" * 32, PASSWORD)


def test_current_only_when_role_password_database_and_privileges_all_hold() -> None:
    assert verdict({"app": role()}, {"app": database()}) == (["app"], {})
    cases = {
        "role app missing": ({}, {"app": database()}),
        "role app cannot log in": ({"app": role(rolcanlogin=False)}, {"app": database()}),
        "role app has SUPERUSER, CREATEDB or CREATEROLE": ({"app": role(rolsuper=True)}, {"app": database()}),
        "role app: no password set": ({"app": role(rolpassword=None)}, {"app": database()}),
        "database missing": ({"app": role()}, {}),
        "owned by postgres": ({"app": role()}, {"app": database(owner="postgres")}),
        "encoding SQL_ASCII": ({"app": role()}, {"app": database(encoding="SQL_ASCII")}),
        "default privileges (PUBLIC may connect)": ({"app": role()}, {"app": database(explicit_acl=False)}),
        "PUBLIC has CONNECT": ({"app": role()}, {"app": database(public_privs=["CONNECT"])}),
        "app lacks an explicit CONNECT or TEMPORARY grant": (
            {"app": role()},
            {"app": database(owner_privs=["CONNECT"])},
        ),
    }
    for reason, (roles, dbs) in cases.items():
        assert verdict(roles, dbs) == ([], {"app": reason}), reason
    for flag in ("rolcreatedb", "rolcreaterole"):
        assert verdict({"app": role(**{flag: True})}, {"app": database()})[0] == []


def test_a_wrong_password_is_not_current_and_no_reason_carries_a_secret() -> None:
    wrong = [dict(DECLARED[0], password="another-secret")]
    current, reasons = verdict({"app": role()}, {"app": database()}, declared=wrong)
    assert current == [] and reasons == {"app": "role app: password differs"}
    assert "secret" not in str(reasons)


def test_passwords_are_judged_as_postgresql_user_judges_them() -> None:
    md5 = "md5" + __import__("hashlib").md5(b"app-secretapp").hexdigest()
    # An md5 verifier stays only while the server still hashes with md5 (postgresql_user rewrites it otherwise).
    assert state.password_reason(md5, PASSWORD, "app", "md5") is None
    assert state.password_reason(md5, PASSWORD, "app", "scram-sha-256")
    assert state.password_reason(md5, "other", "app", "md5") == "password differs"
    # A declared verifier must equal the stored one; an empty password means none stored.
    assert state.password_reason(PG_VERIFIER, PG_VERIFIER, "app", "scram-sha-256") is None
    assert state.password_reason("", "", "app", "scram-sha-256") == "a password is set, none declared"
    assert state.password_reason(None, "", "app", "scram-sha-256") is None
    # When in doubt (SASLprep of a non-ASCII password, an unknown form): not current.
    assert state.password_reason(PG_VERIFIER, "pässword", "app", "scram-sha-256")
    assert state.password_reason("plain-text", PASSWORD, "app", "scram-sha-256")
    # SQL_ASCII servers hand rolpassword back as bytes.
    assert verdict({"app": role(rolpassword=PG_VERIFIER.encode())}, {"app": database()})[0] == ["app"]


# --- against a real PostgreSQL (the lab image), the statements the role's tasks run -----------------

NAME = f"homelab-pgstate-{os.getpid()}"


@pytest.fixture
def superuser() -> Iterator[object]:
    """A psycopg connection (autocommit) as superuser to a fresh PostgreSQL container."""
    import psycopg

    with postgres_container(NAME) as ip:
        with psycopg.connect(f"host={ip} user=postgres password=pgtest dbname=postgres", autocommit=True) as conn:
            yield conn


def _declare(conn, owner: str = "app", name: str = "app", password: str = PASSWORD) -> None:
    """What the four tasks leave behind: the role, the database, PUBLIC out, the owner in."""
    conn.execute(f"CREATE ROLE {owner} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}'")
    conn.execute(f"CREATE DATABASE {name} OWNER {owner} ENCODING 'UTF8' TEMPLATE template0")
    conn.execute(f"REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC")
    conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {owner}")


def _check(conn, declared: list[dict] | None = None):
    declared = declared or DECLARED
    return state.evaluate(declared, *state.read_catalogs(conn, declared))


@pytest.mark.lab
@pytest.mark.xdist_group("postgres-container")
def test_a_real_server_as_the_tasks_leave_it_is_current_and_every_difference_is_not(superuser) -> None:
    conn = superuser
    assert _check(conn) == ([], {"app": "role app missing"})
    _declare(conn)
    assert _check(conn) == (["app"], {})
    # The verifier this server made verifies the declared password, and only that.
    verifier = state._text(conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'").fetchone()[0])
    assert verifier.startswith("SCRAM-SHA-256$") and state.scram_verifies(verifier, PASSWORD)
    assert _check(conn, [dict(DECLARED[0], password="wrong")]) == ([], {"app": "role app: password differs"})

    conn.execute("GRANT CONNECT ON DATABASE app TO PUBLIC")
    assert _check(conn) == ([], {"app": "PUBLIC has CONNECT"})
    conn.execute("REVOKE CONNECT ON DATABASE app FROM PUBLIC")
    conn.execute("GRANT TEMPORARY ON DATABASE app TO PUBLIC")
    assert _check(conn) == ([], {"app": "PUBLIC has TEMPORARY"})
    conn.execute("REVOKE TEMPORARY ON DATABASE app FROM PUBLIC")
    conn.execute("REVOKE TEMPORARY ON DATABASE app FROM app")
    assert _check(conn) == ([], {"app": "app lacks an explicit CONNECT or TEMPORARY grant"})
    conn.execute("GRANT TEMPORARY ON DATABASE app TO app")
    assert _check(conn) == (["app"], {})

    conn.execute("ALTER ROLE app SUPERUSER")
    assert _check(conn) == ([], {"app": "role app has SUPERUSER, CREATEDB or CREATEROLE"})
    conn.execute("ALTER ROLE app NOSUPERUSER")
    conn.execute("ALTER ROLE app PASSWORD 'x'")
    assert _check(conn) == ([], {"app": "role app: password differs"})
    conn.execute(f"ALTER ROLE app PASSWORD '{PASSWORD}'")
    assert _check(conn) == (["app"], {})

    # A database never created (its role is there), and one created without revoking PUBLIC.
    conn.execute("CREATE ROLE other LOGIN PASSWORD 'other-pw'")
    other = {"name": "other", "owner": "other", "password": "other-pw", "encoding": "UTF8"}
    assert _check(conn, [*DECLARED, other]) == (["app"], {"other": "database missing"})
    conn.execute("CREATE DATABASE other OWNER other ENCODING 'UTF8' TEMPLATE template0")
    assert _check(conn, [other]) == ([], {"other": "default privileges (PUBLIC may connect)"})
    conn.execute("CREATE DATABASE latin OWNER other ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    assert _check(conn, [dict(other, name="latin")]) == ([], {"latin": "encoding LATIN1"})

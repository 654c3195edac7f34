"""What a user of the two bots sees once discord_bot and stream_bot have run.

discord_bot is built on the lab host from a local git repository (a tiny Node app with no npm
dependencies that logs in to the database named by DATABASE_URL with PostgreSQL's wire protocol,
SCRAM included, and runs a query) on the Debian Node.js image that stands in for node:22-slim,
through the role's default Dockerfile and `npm start`. stream_bot runs from an image (the stand-in,
which queries DATABASE_URL with psycopg2). Both answer through Caddy over HTTPS. A new commit is
deployed as a new image tagged with it; a commit whose app exits is rolled back to the previous
image and the run fails.
"""

from __future__ import annotations

import json
import shlex

from checks import DELIVER, STAGES, assert_check_mode_clean, run_converge, stages_run
from services import get_json

BOT = "https://bot.lab.test/"
STREAM = "https://stream.lab.test/"
WORKTREE = "/srv/lab-bot"


def head(host) -> str:
    return host.check_output("git -C /srv/git/discord_bot.git rev-parse main").strip()


def running_image(host, name: str) -> str:
    """The image of a container, by its name: the hostname form of the role's (discord-bot)."""
    return host.check_output(f"docker inspect -f '{{{{.Config.Image}}}}' {name}").strip()


def commit(host, message: str, script: str) -> str:
    """Change the lab bot's working tree with a shell script, commit it, push it to main."""
    cmd = (
        f"set -e; cd {WORKTREE}; {script}; git add -A; git commit -q -m {shlex.quote(message)}; git push -q origin main"
    )
    host.run_expect([0], f"bash -c {shlex.quote(cmd)}")
    return head(host)


def set_version(version: str) -> str:
    return f"sed -i \"s/^const VERSION = .*/const VERSION = '{version}';/\" server.js"


def test_discord_bot_answers_through_caddy_and_logs_in_to_its_own_database(host):
    body = get_json(host, BOT + "status")
    assert body["service"] == "lab-bot" and body["version"] == "v1"
    # A real login (SCRAM) and query with DATABASE_URL, as the bot's own user on its own database.
    assert body["database"] == "ok discord_bot discord_bot"
    # The default Dockerfile runs the app as the node user, like node:22-slim's.
    assert body["user"] == 1000
    # The named secrets that are set reach the app; unset ones are left out.
    env = set(body["env"])
    assert {"DATABASE_URL", "DISCORD_TOKEN", "OPENAI_API_KEY", "NODE_ENV", "PORT", "PUBLIC_URL"} <= env
    assert "DISCORD_CLIENT_SECRET" not in env


def test_discord_bot_runs_the_image_built_from_the_checked_out_commit(host):
    image = running_image(host, "discord-bot")
    assert image.startswith(f"homelab/discord_bot:{head(host)[:12]}-"), image
    # Built by the default Dockerfile (the repository has none), which npm-starts the app.
    dockerfile = host.file("/opt/homelab/discord_bot/Dockerfile").content_string
    assert 'CMD ["npm", "start"]' in dockerfile and "npm ci" not in dockerfile


def test_stream_bot_runs_from_an_image_on_its_own_database(host):
    body = get_json(host, STREAM)
    assert body["service"] == "stream_bot" and body["port"] == 3000
    assert body["database"] == "ok stream_bot stream_bot"
    assert {"DATABASE_URL", "TWITCH_CLIENT_ID", "TWITCH_CLIENT_SECRET"} <= set(body["env"])
    assert running_image(host, "stream-bot").startswith("homelab-lab/standin:")
    assert not host.file("/opt/homelab/stream_bot/src").exists


def _redis_as(host, url: str, *command: str):
    """A redis-cli command as a client holding url would send it, from inside the redis container
    (on the homelab network, where `redis` resolves). The URL reaches redis-cli through the
    environment of docker exec, not its command line."""
    return host.run(
        f"URL={shlex.quote(url)} docker exec -e URL redis sh -c "
        + shlex.quote('redis-cli --no-auth-warning -u "$URL" ' + shlex.join(command))
    )


def test_stream_bot_uses_its_own_keys_on_the_shared_redis_and_nothing_else(host):
    """stream_bot declares Redis (the lab's stream_bot_redis: true): its REDIS_URL reaches the shared
    Redis as user stream_bot, which may use the keys under stream_bot: and no others."""
    body = get_json(host, STREAM)
    assert body["redis"] == "ok stream_bot stream_bot:standin", body
    assert {"REDIS_URL", "REDIS_KEY_PREFIX"} <= set(body["env"])
    env = dict(
        line.split("=", 1)
        for line in host.file("/opt/homelab/stream_bot/secrets.env").content_string.splitlines()
        if "=" in line and not line.startswith("#")
    )
    url, prefix = env["REDIS_URL"].strip("'"), env["REDIS_KEY_PREFIX"].strip("'")
    assert url.startswith("redis://stream_bot:") and url.endswith("@redis:6379/0") and prefix == "stream_bot:"
    assert _redis_as(host, url, "get", "stream_bot:standin").stdout.strip() == "ok"
    denied_commands = (
        ("get", "discord_bot:x"),
        ("set", "other", "1"),
        ("keys", "*"),
        ("flushall",),
        ("config", "get", "*"),
    )
    for denied in denied_commands:
        out = _redis_as(host, url, *denied).stdout
        assert "NOPERM" in out, (denied, out)
    wrong = url.replace("stream_bot:", "stream_bot:x", 1)
    assert "WRONGPASS" in _redis_as(host, wrong, "ping").stderr
    # The bot's container was given the URL in secrets.env, not compose.yml.
    assert "REDIS_URL" not in host.file("/opt/homelab/stream_bot/compose.yml").content_string


def test_secrets_are_root_only_and_not_in_compose_yml(host):
    for bot, names in (
        ("discord_bot", ("DISCORD_TOKEN", "DATABASE_URL")),
        ("stream_bot", ("TWITCH_CLIENT_SECRET", "DATABASE_URL")),
    ):
        secrets = host.file(f"/opt/homelab/{bot}/secrets.env")
        assert (secrets.user, secrets.mode) == ("root", 0o600)
        assert all(f"{n}=" in secrets.content_string for n in names)
        compose = host.file(f"/opt/homelab/{bot}/compose.yml").content_string
        assert not any(n in compose for n in names), compose


def test_containers_have_limits_and_are_healthy(host):
    for bot in ("discord_bot", "stream_bot"):
        # The compose project and service keep the role's name; the container and its hostname
        # use a hyphen (an underscore is not valid in a DNS hostname).
        container = bot.replace("_", "-")
        info = json.loads(host.check_output(f"docker inspect {container}"))[0]
        assert info["Config"]["Hostname"] == container
        assert info["Config"]["Labels"]["com.docker.compose.project"] == bot
        assert info["Config"]["Labels"]["com.docker.compose.service"] == bot
        assert info["HostConfig"]["Memory"] == 512 * 1024**2
        assert info["HostConfig"]["NanoCpus"] == 500_000_000
        assert info["State"]["Health"]["Status"] == "healthy"
        assert info["Config"]["Labels"]["homelab.service"] == bot


def test_a_new_commit_is_built_and_deployed(host):
    before = running_image(host, "discord-bot")
    # v2 also brings a package-lock.json (no dependencies), so the default Dockerfile runs npm ci.
    lock = json.dumps(
        {
            "name": "lab-bot",
            "version": "1.0.0",
            "lockfileVersion": 3,
            "requires": True,
            "packages": {"": {"name": "lab-bot", "version": "1.0.0"}},
        }
    )
    sha = commit(host, "lab bot v2", f"{set_version('v2')}; echo {shlex.quote(lock)} > package-lock.json")
    proc = run_converge()
    assert proc.returncode == 0, proc.stdout[-4000:]
    body = get_json(host, BOT)
    assert body["version"] == "v2" and body["database"] == "ok discord_bot discord_bot"
    after = running_image(host, "discord-bot")
    assert after.startswith(f"homelab/discord_bot:{sha[:12]}-") and after != before
    assert "npm ci --omit=dev" in host.file("/opt/homelab/discord_bot/Dockerfile").content_string
    # The previous release is kept for a rollback: its compose file names the previous image.
    assert before in host.file("/opt/homelab/discord_bot/compose.prev.yml").content_string


def test_a_commit_whose_app_exits_is_rolled_back_to_the_previous_image(host):
    good = running_image(host, "discord-bot")
    commit(host, "lab bot: exits at start", "sed -i '1a process.exit(3);' server.js")
    proc = run_converge("-e", json.dumps({"discord_bot_health_timeout": 30}))
    assert proc.returncode != 0, "a release whose app exits was accepted"
    assert "did not become healthy" in proc.stdout and "Rolled back" in proc.stdout, proc.stdout[-3000:]
    # The previous image serves again, and it is what the live compose file names.
    assert running_image(host, "discord-bot") == good
    assert get_json(host, BOT)["version"] == "v2"
    assert good in host.file("/opt/homelab/discord_bot/compose.yml").content_string
    # The fix is a new commit, and it deploys (the check-mode test below then finds nothing to change).
    fixed_sha = commit(host, "lab bot: revert the exit", "git revert --no-edit -n HEAD")
    fixed = run_converge()
    assert fixed.returncode == 0, fixed.stdout[-4000:]
    assert get_json(host, BOT)["version"] == "v2"
    assert running_image(host, "discord-bot").startswith(f"homelab/discord_bot:{fixed_sha[:12]}-")
    # Only the live and the previous release's images are kept.
    tags = host.check_output("docker image ls --format '{{.Tag}}' homelab/discord_bot").split()
    assert len(tags) == 2, tags


RECORD = "/var/lib/homelab/releases/discord_bot.json"
VERSION_TEST = (
    "mkdir -p test; printf '%s\\n' \"const test = require('node:test'); const assert = require('node:assert');\" "
    "\"test('version', () => assert.match(require('fs').readFileSync('server.js', 'utf8'), /VERSION = '{want}'/));\" "
    "> test/version.test.js"
)


def deliver(**extra):
    """The catalog's `deliver` playbook on the lab host, as the job engine runs it (the bots are
    enabled by converge.yml's play vars here, so the run gets them as extra vars too)."""
    params = {
        "service": "discord_bot",
        "discord_bot_enabled": True,
        "stream_bot_enabled": True,
        "discord_bot_health_timeout": 60,
        "discord_bot_test_command": "node --test",
        **extra,
    }
    return run_converge("-e", json.dumps(params), playbook=str(DELIVER))


def record(host) -> dict:
    return json.loads(host.file(RECORD).content_string)


def label(host) -> str:
    return host.check_output("docker inspect -f '{{index .Config.Labels \"homelab.commit\"}}' discord-bot").strip()


def test_the_pipeline_tests_builds_deploys_and_verifies_a_commit_and_it_goes_live(host):
    before = record(host)["commit"]
    sha = commit(host, "lab bot v3, with tests", f"{set_version('v3')}; {VERSION_TEST.format(want='v3')}")
    proc = deliver()
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert stages_run(proc.stdout) == list(STAGES), proc.stdout[-3000:]
    # The tests ran in a throwaway container: node's test runner reported the passing test.
    assert "pass 1" in proc.stdout and "fail 0" in proc.stdout, proc.stdout[-3000:]
    assert get_json(host, BOT)["version"] == "v3"
    assert running_image(host, "discord-bot").startswith(f"homelab/discord_bot:{sha[:12]}-")
    assert label(host) == sha
    rec = record(host)
    assert rec["commit"] == sha and rec["previous_commit"] == before
    assert rec["last"]["outcome"] == "live" and rec["last"]["commit"] == sha
    assert not host.run("docker ps -a --format '{{.Names}}' | grep -x discord-bot-test").stdout


def test_a_commit_whose_tests_fail_is_not_built_and_the_release_keeps_serving(host):
    live = running_image(host, "discord-bot")
    sha = commit(host, "lab bot v4, tests fail", f"{set_version('v4')}; {VERSION_TEST.format(want='v5')}")
    proc = deliver()
    assert proc.returncode != 0
    assert stages_run(proc.stdout) == ["Validate", "Test"], proc.stdout[-3000:]
    assert f"{sha[:12]} failed at Test; nothing live was changed" in proc.stdout, proc.stdout[-3000:]
    assert "fail 1" in proc.stdout
    assert running_image(host, "discord-bot") == live and get_json(host, BOT)["version"] == "v3"
    assert host.run(f"docker image inspect homelab/discord_bot:{sha[:12]}").rc != 0, "a failing commit was built"
    rec = record(host)
    assert (rec["last"]["commit"], rec["last"]["outcome"], rec["last"]["stage"]) == (sha, "failed", "Test")


def test_a_release_its_route_cannot_reach_is_rolled_back_after_verify(host):
    """Healthy in its container (the healthcheck asks 127.0.0.1) but unreachable for Caddy: the app
    binds to the loopback only, a classic. Verify fails, the previous release serves again."""
    live, live_sha = running_image(host, "discord-bot"), label(host)
    sha = commit(
        host,
        "lab bot v4: listens on loopback",
        f"{set_version('v4')}; {VERSION_TEST.format(want='v4')}; "
        "sed -i \"s/server.listen(Number(process.env.PORT || 3000),/server.listen(Number(process.env.PORT || 3000), '127.0.0.1',/\" server.js",
    )
    proc = deliver()
    assert proc.returncode != 0
    assert stages_run(proc.stdout) == [*STAGES, "Rollback"], proc.stdout[-3000:]
    assert f"{sha[:12]} failed at Verify; the previous release serves again" in proc.stdout, proc.stdout[-3000:]
    assert "did not answer through Caddy" in proc.stdout
    assert running_image(host, "discord-bot") == live and label(host) == live_sha
    assert get_json(host, BOT)["version"] == "v3"
    rec = record(host)
    assert rec["commit"] == live_sha and rec["last"]["outcome"] == "rolled_back" and rec["last"]["stage"] == "Verify"
    # The fix goes live through the pipeline (and leaves main deployable for the check-mode test).
    fixed = commit(
        host,
        "lab bot v4: listen on every address",
        f"git revert --no-edit -n HEAD; {set_version('v4')}; {VERSION_TEST.format(want='v4')}",
    )
    proc = deliver()
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert get_json(host, BOT)["version"] == "v4" and label(host) == fixed
    assert record(host)["previous_commit"] == live_sha


def test_the_pipeline_refuses_a_bad_commit_parameter_and_a_service_it_cannot_deliver(host):
    live = running_image(host, "discord-bot")
    bad = deliver(commit="main; rm -rf /")
    assert bad.returncode != 0 and "is not a commit id" in bad.stdout, bad.stdout[-2000:]
    image = deliver(service="stream_bot")
    assert image.returncode != 0 and "does not allow deliver" in image.stdout, image.stdout[-2000:]
    assert running_image(host, "discord-bot") == live


def test_check_mode_reports_no_changes_on_a_converged_host():
    assert_check_mode_clean()


def test_databases_get_a_marker_row_the_uninstall_must_keep(host):
    """side_effect disables both bots and asserts this row is still in each database."""
    sql = "create table if not exists lab_marker (note text); delete from lab_marker; insert into lab_marker values ('kept')"
    for db in ("discord_bot", "stream_bot"):
        host.run_expect([0], f"docker exec postgres psql -U postgres -d {db} -v ON_ERROR_STOP=1 -c {shlex.quote(sql)}")

"""What a user of the docker role sees on a converged host."""

import json
import os
import re
import subprocess

from checks import assert_check_mode_clean


def _load_image(host, image):
    """Move a locally built image into the lab host's own engine (no registry here)."""
    name = host.backend.get_hostname()
    subprocess.run(
        f"docker save {image} | docker exec -i {name} docker load",
        shell=True, check=True, capture_output=True, timeout=300,
    )


def test_docker_run_works_inside_the_host(host):
    image = os.environ["LAB_DEBIAN_IMAGE"]
    _load_image(host, image)
    out = host.check_output(f"docker run --rm --network homelab {image} sh -c 'echo hello-from-a-container'")
    assert out == "hello-from-a-container"


def test_compose_v2_plugin_answers(host):
    out = host.check_output("docker compose version")
    assert re.match(r"Docker Compose version v?2\.", out), out


def test_daemon_rotates_container_logs(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == "json-file"
    config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert config["log-opts"] == {"max-size": "5m", "max-file": "3"}


def test_homelab_network_exists(host):
    assert host.check_output("docker network inspect homelab --format '{{.Driver}}'") == "bridge"


def test_admin_may_use_docker(host):
    assert "docker" in host.user("labadmin").groups
    assert host.run("runuser -u labadmin -- docker ps").rc == 0


def test_engine_is_enabled_at_boot(host):
    assert host.service("docker").is_enabled
    assert host.service("docker").is_running


def test_check_mode_reports_no_drift():
    assert_check_mode_clean()

"""Small pure parts: ANSI rendering, masking, the catalog file, the design's contrast."""

from __future__ import annotations

import re

import pytest

from homelab.ansi import ansi_to_html
from homelab.catalog import Catalog, CatalogError
from homelab.masking import MASK, mask, mask_text

from webui_helpers import ROOT


def test_ansi_colours_become_spans_and_everything_else_is_escaped():
    html = ansi_to_html("\x1b[0;32mok: [a]\x1b[0m <script>alert(1)</script> \x1b[1;31mbad\x1b[0m\r")
    assert '<span class="ansi-fg-green">ok: [a]</span>' in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert '<span class="ansi-bold ansi-fg-red">bad</span>' in html
    assert "\x1b" not in html and "\r" not in html


def test_masking_hides_secret_keys_known_values_and_inline_assignments():
    res = {
        "msg": "connecting with token abcd1234efgh",
        "password": "hunter22",
        "no_log": True,
        "nested": [{"api_key": "k-123456"}],
        "changed": True,
    }
    out = mask(res, ["abcd1234efgh"])
    assert out["password"] == MASK and out["nested"][0]["api_key"] == MASK
    assert "abcd1234efgh" not in str(out) and out["no_log"] is True and out["changed"] is True
    assert mask_text("\x1b[32mDB_PASSWORD=s3cr3t\x1b[0m") == f"\x1b[32mDB_PASSWORD={MASK}\x1b[0m"


# Roles that are not services: those only other roles include (their tasks/main.yml refuses to run on
# its own), and preflight (a read-only check, the catalog's "preflight").
INTERNAL_ROLES = {"compose_service", "node_app", "preflight", "adopt"}  # no service: included, a check, an operation


def test_the_real_catalog_lists_site_each_role_and_check_variants():
    from homelab.registry import Registry

    cat = Catalog(ROOT / "playbooks" / "catalog.yml", registry=Registry(ROOT / "inventory" / "lab"))
    ids = set(cat.entries)
    assert {"site", "site_check", "deploy_service", "check_service"} <= ids

    def service_enum(entry_id: str) -> set[str]:
        return {e for p in cat.entries[entry_id].parameters if p.name == "service" for e in p.enum}

    services = service_enum("deploy_service")
    assert services and service_enum("check_service") == services
    for role in sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir()):
        if role in INTERNAL_ROLES:
            continue
        assert (f"deploy-{role}" in ids and f"check-{role}" in ids) or role in services, (
            f"role {role} has no deploy/check entry"
        )
    for e in cat.entries.values():
        assert e.playbook.is_file() and e.playbook.is_relative_to(ROOT / "playbooks")
        if e.id.startswith("check-") or e.id.endswith("-check"):
            assert e.forced_check and e.risk == "read-only"


def test_a_catalog_entry_pointing_outside_its_playbook_dir_is_refused(tmp_path):
    (tmp_path / "pb").mkdir()
    (tmp_path / "evil.yml").write_text("- hosts: all\n")
    (tmp_path / "catalog.yml").write_text(
        "playbook_dir: pb\nplaybooks:\n"
        "  - {id: evil, title: E, category: operate, risk: read-only, playbook: ../evil.yml, targets: [all]}\n"
    )
    with pytest.raises(CatalogError, match="outside"):
        Catalog(tmp_path / "catalog.yml")


def _luminance(hex_colour: str) -> float:
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_design_colours_meet_wcag_aa_contrast():
    css = (ROOT / "webui" / "homelab" / "web" / "static" / "cosmic.css").read_text()
    var = dict(re.findall(r"--([a-z0-9-]+):\s*(#[0-9a-fA-F]{6})", css))
    backgrounds = [var["space"], var["space-2"], var["panel-solid"], "#03050d", "#0a0f25"]
    for fg in ("text", "muted", "link", "ok", "changed", "bad"):
        for bg in backgrounds:
            assert _contrast(var[fg], bg) >= 4.5, f"--{fg} on {bg}: {_contrast(var[fg], bg):.2f}"
    for bg in ("#5b3fd1", "#1d4ed8", "#b4234a"):  # primary gradient ends, danger: white text
        assert _contrast("#ffffff", bg) >= 4.5, bg
    for ansi in re.findall(r"\.ansi-fg-[a-z-]+(?:, \.ansi-fg-[a-z-]+)* \{ color: (#[0-9a-f]{6}); \}", css):
        assert _contrast(ansi, "#03050d") >= 4.5, ansi

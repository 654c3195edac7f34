"""The catalog: the only playbooks anyone can run, and the schema their parameters must satisfy.

Everything a caller sends (web form, API, CLI, schedule) is checked here before a job exists:
unknown ids, unknown or badly typed parameters, Jinja in values and host patterns in the limit
are refused with a message a person can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

CATEGORIES = ("deploy", "operate", "diagnose", "maintain")
RISKS = ("read-only", "changes-config", "disruptive")
TYPES = ("string", "integer", "boolean", "enum")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
PARAM_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
LIMIT_TOKEN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Values from outside reach ansible as unsafe data (homelab.extravars), so ansible never templates
# them whatever their characters. This blocklist is only a second layer that gives a clear 400 for
# the obvious template markers, including a `#jinja2:` header that redefines the delimiters.
JINJA_RE = re.compile(r"\{\{|\{%|\{#|\}\}|%\}|#\}|#jinja2:", re.I)
# A secret shorter than this could not be masked in output without masking ordinary text.
SECRET_MIN_LENGTH = 8
CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Where a form finds values to offer for a text parameter (still validated as typed): `suggest: backups`
# offers the backup ids the store knows from finished backup and list_backups jobs (homelab.backups).
SUGGESTIONS = ("backups",)


class ValidationError(ValueError):
    """A request the catalog refuses; status is the HTTP status that fits."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class CatalogError(Exception):
    """The catalog file itself is wrong: the server refuses to start with it."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    description: str = ""
    default: Any = None
    required: bool = False
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    max_length: int = 256
    secret: bool = False
    enum_note: str = ""  # why an enum from the service registry is empty (the registry cannot be read)
    suggest: str = ""  # a form offers values from here (SUGGESTIONS); the value is validated as any other

    def coerce(self, raw: Any) -> Any:
        """The value as the playbook should see it, or ValidationError."""
        where = f"parameter '{self.name}'"
        if self.type == "boolean":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(raw, str) and raw.lower() in ("false", "0", "no", "off", ""):
                return False
            raise ValidationError(f"{where} must be true or false", field=self.name)
        if self.type == "integer":
            if isinstance(raw, bool) or not isinstance(raw, (int, str)):
                raise ValidationError(f"{where} must be a whole number", field=self.name)
            try:
                value = int(raw)
            except ValueError:
                raise ValidationError(
                    f"{where} must be a whole number, not {str(raw)[:40]!r}", field=self.name
                ) from None
            if self.minimum is not None and value < self.minimum:
                raise ValidationError(f"{where} must be at least {self.minimum}", field=self.name)
            if self.maximum is not None and value > self.maximum:
                raise ValidationError(f"{where} must be at most {self.maximum}", field=self.name)
            return value
        if not isinstance(raw, str):
            raise ValidationError(f"{where} must be text", field=self.name)
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(
                f"{where} is not valid Unicode text (it holds a lone surrogate)", field=self.name
            ) from None
        if self.type == "enum":
            if not self.enum:
                raise ValidationError(
                    f"{where} has nothing to choose from: {self.enum_note or 'no values'}", status=409, field=self.name
                )
            if raw not in self.enum:
                raise ValidationError(
                    f"{where} must be one of {', '.join(self.enum)}; got {raw[:40]!r}", field=self.name
                )
            return raw
        if len(raw) > self.max_length:
            raise ValidationError(f"{where} is longer than {self.max_length} characters", field=self.name)
        if JINJA_RE.search(raw):
            raise ValidationError(f"{where} may not contain template markers ({{{{ }}}}, {{% %}})", field=self.name)
        if CONTROL_RE.search(raw):
            raise ValidationError(f"{where} may not contain control characters", field=self.name)
        if self.pattern and not re.fullmatch(self.pattern, raw):
            raise ValidationError(f"{where} does not match the pattern {self.pattern}", field=self.name)
        if self.secret and raw and len(raw) < SECRET_MIN_LENGTH:
            raise ValidationError(
                f"{where} is a secret and must be at least {SECRET_MIN_LENGTH} characters", field=self.name
            )
        return raw

    def as_schema(self) -> dict[str, Any]:
        """The parameter as a JSON-schema fragment (API and OpenAPI document)."""
        s: dict[str, Any] = {"description": self.description}
        if self.type == "enum":
            s.update(type="string", enum=list(self.enum))
        else:
            s["type"] = self.type
        if self.pattern:
            s["pattern"] = self.pattern
        if self.minimum is not None:
            s["minimum"] = self.minimum
        if self.maximum is not None:
            s["maximum"] = self.maximum
        if self.default is not None:
            s["default"] = self.default
        if self.secret:
            s["writeOnly"] = True
        return s


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    description: str
    category: str
    risk: str
    playbook: Path
    targets: tuple[str, ...]
    parameters: tuple[Parameter, ...] = ()
    mode: str = "run"  # "check": always --check --diff (a drift/diff variant)
    tags: tuple[str, ...] = ()
    interrupts: str = ""  # a disruptive entry: what a person loses while it runs (asked to confirm)

    @property
    def needs_confirm(self) -> bool:
        """A disruptive run starts only when the person (or API client) confirmed it."""
        return self.risk == "disruptive"

    @property
    def forced_check(self) -> bool:
        return self.mode == "check"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "category": self.category,
            "risk": self.risk,
            "playbook": self.playbook.name,
            "targets": list(self.targets),
            "mode": self.mode,
            "interrupts": self.interrupts,
            "needs_confirm": self.needs_confirm,
            "parameters": {p.name: {**p.as_schema(), "required": p.required} for p in self.parameters},
        }


@dataclass(frozen=True)
class JobSpec:
    """A validated request: what the engine runs. Built only by Catalog.prepare."""

    entry: Entry
    extravars: dict[str, Any]
    hosts: tuple[str, ...]
    limit: str
    check: bool
    diff: bool
    secrets: tuple[str, ...] = field(default=())  # the values of the secret parameters (for masking output)
    tags: tuple[str, ...] = field(default=())  # --tags: only these parts of the playbook run
    secret_names: tuple[str, ...] = field(default=())  # the parameters the catalog declares `secret: true`

    def masked_params(self) -> dict[str, Any]:
        """The parameters as they may be stored or shown: the ones the schema declares secret masked,
        whatever their value looks like (a refused request's raw parameters: homelab.refused)."""
        from homelab.masking import MASK

        return {k: MASK if k in self.secret_names else v for k, v in self.extravars.items()}


class Entries(dict[str, Entry]):
    """The entries by id. A former id (an entry's `aliases:`) finds its entry through [], get and
    `in`, so schedules, rules, job rows and API clients that still name it keep working; iterating,
    keys(), values() and len() see only the current ids (what the API and the UI list)."""

    def __init__(self, entries: dict[str, Entry] | None = None, aliases: dict[str, str] | None = None) -> None:
        super().__init__(entries or {})
        self.aliases: dict[str, str] = dict(aliases or {})  # former id -> current id

    def canonical(self, entry_id: Any) -> Any:
        """The current id for a former one; anything else unchanged."""
        return self.aliases.get(entry_id, entry_id) if isinstance(entry_id, str) else entry_id

    def __missing__(self, entry_id: str) -> Entry:
        if isinstance(entry_id, str) and entry_id in self.aliases:
            return dict.__getitem__(self, self.aliases[entry_id])
        raise KeyError(entry_id)

    def __contains__(self, entry_id: object) -> bool:
        return dict.__contains__(self, entry_id) or (isinstance(entry_id, str) and entry_id in self.aliases)

    def get(self, entry_id: Any, default: Any = None) -> Any:
        return self[entry_id] if isinstance(entry_id, str) and entry_id in self else default


class ServiceSource(Protocol):
    """Where `enum_from: {registry: <capability>}` parameters take their values: the service
    registry (homelab.registry.Registry), resolved from the inventory, never a list kept here."""

    def union(self) -> dict[str, Any]: ...


class Catalog:
    """The catalog file, loaded and checked once (reload() picks up edits; a change of the service
    registry's names or capabilities reloads it on the next lookup)."""

    def __init__(self, path: Path, registry: ServiceSource | None = None) -> None:
        self.path = path.resolve()
        self.registry = registry
        self.entries: Entries = Entries()
        self.registry_error = ""
        self._services_seen: tuple[tuple[str, tuple[str, ...]], ...] | None = None
        self.reload()

    def _service_names(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(name, capabilities) of every registry service; () with registry_error set when the
        registry cannot be read (the catalog still loads: its service choices are empty, saying why)."""
        self.registry_error = ""
        if self.registry is None:
            return ()
        try:
            return tuple(sorted((n, tuple(s.ops)) for n, s in self.registry.union().items()))
        except Exception as exc:  # a broken inventory or registry entry must not stop the server
            self.registry_error = f"the service registry cannot be read: {exc}"[:500]
            return ()

    def refresh(self) -> None:
        """Reload when the registry's services changed (a role added, a capability changed)."""
        if self.registry is not None and self._service_names() != self._services_seen:
            self.reload()

    def reload(self) -> None:
        try:
            data = yaml.safe_load(self.path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise CatalogError(f"cannot read the catalog {self.path}: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("playbooks"), list):
            raise CatalogError(f"{self.path}: expected a mapping with a 'playbooks' list")
        base = (self.path.parent / str(data.get("playbook_dir", "."))).resolve()
        self._services_seen = self._service_names()
        entries: dict[str, Entry] = {}
        aliases: dict[str, str] = {}
        for i, raw in enumerate(data["playbooks"]):
            entry = self._entry(raw, base, i)
            if entry.id in entries or entry.id in aliases:
                raise CatalogError(f"{self.path}: id '{entry.id}' is listed twice")
            entries[entry.id] = entry
            for alias in self._aliases(raw, i):
                if alias in entries or alias in aliases:
                    raise CatalogError(f"{self.path}: id '{alias}' is listed twice (as an alias of '{entry.id}')")
                aliases[alias] = entry.id
        clash = sorted(set(aliases) & set(entries))
        if clash:
            raise CatalogError(f"{self.path}: id '{clash[0]}' is listed twice (as an id and as an alias)")
        self.entries = Entries(entries, aliases)

    def _aliases(self, raw: dict[str, Any], index: int) -> list[str]:
        """An entry's former ids (`aliases:`, a list or one id): still accepted, never listed."""
        aliases = raw.get("aliases") or []
        if isinstance(aliases, str):
            aliases = [aliases]
        if not isinstance(aliases, list):
            raise CatalogError(f"{self.path}: playbooks[{index}]: aliases must be a list of ids")
        for alias in aliases:
            if not isinstance(alias, str) or not ID_RE.match(alias):
                raise CatalogError(f"{self.path}: playbooks[{index}]: alias {alias!r} must match {ID_RE.pattern}")
        return list(aliases)

    def _entry(self, raw: Any, base: Path, index: int) -> Entry:
        where = f"{self.path}: playbooks[{index}]"
        if not isinstance(raw, dict):
            raise CatalogError(f"{where} is not a mapping")
        for key in ("id", "title", "category", "risk", "playbook", "targets"):
            if key not in raw:
                raise CatalogError(f"{where} has no '{key}'")
        if not ID_RE.match(str(raw["id"])):
            raise CatalogError(f"{where}: id {raw['id']!r} must match {ID_RE.pattern}")
        if raw["category"] not in CATEGORIES:
            raise CatalogError(f"{where}: category must be one of {CATEGORIES}")
        if raw["risk"] not in RISKS:
            raise CatalogError(f"{where}: risk must be one of {RISKS}")
        playbook = (base / str(raw["playbook"])).resolve()
        if not playbook.is_relative_to(base):
            raise CatalogError(f"{where}: playbook {raw['playbook']!r} is outside {base}")
        if not playbook.is_file():
            raise CatalogError(f"{where}: playbook {playbook} does not exist")
        interrupts = str(raw.get("interrupts") or "").strip()
        if raw["risk"] == "disruptive" and not interrupts:
            interrupts = "What it acts on is interrupted while it runs."
        mode = raw.get("mode", "run")
        if mode not in ("run", "check"):
            raise CatalogError(f"{where}: mode must be run or check")
        params = []
        for name, spec in (raw.get("parameters") or {}).items():
            params.append(self._parameter(str(name), self._enum_from(spec or {}, f"{where}: parameter {name}"), where))
        targets = raw["targets"]
        if isinstance(targets, str):
            targets = [targets]
        return Entry(
            id=str(raw["id"]),
            title=str(raw["title"]),
            description=str(raw.get("description", "")).strip(),
            category=raw["category"],
            risk=raw["risk"],
            playbook=playbook,
            targets=tuple(map(str, targets)),
            parameters=tuple(params),
            mode=mode,
            tags=tuple(raw.get("tags") or ()),
            interrupts=interrupts,
        )

    def _enum_from(self, spec: dict[str, Any], where: str) -> dict[str, Any]:
        """`enum_from: {registry: deploy}`: an enum of every registry service whose entry allows deploy."""
        source = spec.get("enum_from")
        if source is None:
            return spec
        from homelab.registry import CAPABILITIES

        if not isinstance(source, dict) or set(source) != {"registry"} or source["registry"] not in CAPABILITIES:
            raise CatalogError(f"{where}: enum_from must be {{registry: <{' | '.join(CAPABILITIES)}>}}")
        if self.registry is None:
            raise CatalogError(f"{where} takes its values from the service registry, but the catalog has no inventory")
        names = sorted(n for n, ops in self._services_seen or () if source["registry"] in ops)
        if not names and not self.registry_error:
            raise CatalogError(f"{where}: no service in the registry allows {source['registry']}")
        return {
            **{k: v for k, v in spec.items() if k != "enum_from"},
            "type": "enum",
            "enum": names,
            "enum_note": self.registry_error,
        }

    @staticmethod
    def _parameter(name: str, spec: dict[str, Any], where: str) -> Parameter:
        if not PARAM_NAME_RE.match(name) or name.startswith("ansible_"):
            raise CatalogError(f"{where}: parameter name {name!r} is not allowed")
        ptype = spec.get("type", "string")
        if ptype not in TYPES:
            raise CatalogError(f"{where}: parameter {name} has unknown type {ptype!r}")
        enum = tuple(map(str, spec.get("enum") or ()))
        if ptype == "enum" and not enum and not spec.get("enum_note"):
            raise CatalogError(f"{where}: enum parameter {name} lists no values")
        if spec.get("pattern"):
            re.compile(spec["pattern"])
        suggest = str(spec.get("suggest") or "")
        if suggest and (suggest not in SUGGESTIONS or ptype != "string"):
            raise CatalogError(f"{where}: parameter {name}: suggest must be one of {SUGGESTIONS} on a string parameter")
        p = Parameter(
            name=name,
            type=ptype,
            description=str(spec.get("description", "")),
            default=spec.get("default"),
            required=bool(spec.get("required", False)),
            enum=enum,
            pattern=spec.get("pattern"),
            minimum=spec.get("minimum"),
            maximum=spec.get("maximum"),
            max_length=int(spec.get("max_length", 256)),
            secret=bool(spec.get("secret", False)),
            enum_note=str(spec.get("enum_note") or ""),
            suggest=suggest,
        )
        if p.default is not None:
            try:
                p.coerce(p.default)
            except ValidationError as exc:
                raise CatalogError(f"{where}: default of {name} is invalid: {exc}") from None
        return p

    def get(self, entry_id: Any) -> Entry:
        self.refresh()
        if not isinstance(entry_id, str) or not ID_RE.match(entry_id) or entry_id not in self.entries:
            shown = str(entry_id)[:60]
            raise ValidationError(f"playbook '{shown}' is not in the catalog", status=404, field="playbook")
        return self.entries[entry_id]

    def prepare(
        self,
        entry_id: Any,
        params: Any = None,
        limit: Any = "",
        *,
        check: Any = False,
        diff: Any = False,
        inventory: "HostResolver | None" = None,
        tags: Any = (),
    ) -> JobSpec:
        """Validate a request against the catalog and the inventory; nothing runs if this raises."""
        entry = self.get(entry_id)
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise ValidationError("params must be an object of name -> value", field="params")
        known = {p.name: p for p in entry.parameters}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValidationError(
                f"playbook '{entry.id}' takes no parameter {', '.join(map(str, unknown))[:80]}", field="params"
            )
        extravars: dict[str, Any] = {}
        secrets: list[str] = []
        secret_names: list[str] = []
        for name, p in known.items():
            raw = params.get(name)
            if raw is None or (raw == "" and p.type not in ("boolean",)):
                if p.required and p.default is None:
                    raise ValidationError(f"parameter '{name}' is required", field=name)
                if p.default is None:
                    continue
                raw = p.default
            extravars[name] = p.coerce(raw)
            if p.secret and isinstance(extravars[name], str):
                secrets.append(extravars[name])
                secret_names.append(name)
        for flag_name, flag in (("check", check), ("diff", diff)):
            if not isinstance(flag, bool):
                raise ValidationError(f"{flag_name} must be true or false", field=flag_name)
        if limit is None:
            limit = ""
        if not isinstance(limit, str):
            raise ValidationError("limit must be text: host or group names separated by commas", field="limit")
        hosts = (inventory or _NO_INVENTORY).resolve(entry, limit)
        tags = parse_tags(tags)
        return JobSpec(
            entry=entry,
            extravars=extravars,
            hosts=tuple(hosts),
            limit=",".join(hosts),
            check=bool(check) or entry.forced_check,
            diff=bool(diff) or entry.forced_check,
            secrets=tuple(secrets),
            tags=tags,
            secret_names=tuple(secret_names),
        )


def require_confirm(entry: Entry, confirm: Any) -> None:
    """A disruptive entry runs only when asked with confirm = true (the form's checkbox, the API's
    "confirm" field); schedules and Jarvis start runs by their own rules and do not come here."""
    if not entry.needs_confirm:
        return
    if confirm is not True:
        raise ValidationError(
            f"'{entry.title}' is disruptive ({entry.interrupts}); confirm it to start it",
            field="confirm",
        )


def parse_limit(limit: str) -> list[str]:
    """Host or group names separated by commas; no ansible patterns (wildcards, :&, !, @files)."""
    tokens = [t.strip() for t in limit.split(",") if t.strip()]
    for t in tokens:
        if not LIMIT_TOKEN_RE.match(t):
            raise ValidationError(
                f"limit {t[:40]!r} is not a host or group name (letters, digits, '.', '_', '-'; no patterns)",
                field="limit",
            )
    return tokens


def parse_tags(tags: Any) -> tuple[str, ...]:
    """Tag names (a list, or text separated by commas); no patterns, at most 32."""
    if tags is None or tags == "":
        return ()
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        raise ValidationError("tags must be a list of tag names", field="tags")
    if len(tags) > 32:
        raise ValidationError("at most 32 tags", field="tags")
    for t in tags:
        if not TAG_RE.match(t):
            raise ValidationError(f"tag {t[:40]!r} is not a tag name (letters, digits, '.', '_', '-')", field="tags")
    return tuple(sorted(set(tags)))


class HostResolver(Protocol):
    """What a limit means on an inventory: homelab.inventory.Inventory is the implementation."""

    def resolve(self, entry: Entry, limit: str) -> list[str]: ...


class _NoInventory(HostResolver):
    def resolve(self, entry: Entry, limit: str) -> list[str]:
        raise ValidationError("no inventory is configured", status=500)


_NO_INVENTORY = _NoInventory()


def check_variant(catalog: Catalog, entry_id: str) -> Entry | None:
    """The check-only entry of the same playbook that needs no parameter ("Check site (dry run)" for
    "site"), the entry itself when it is one; None when the catalog has none."""
    entry = catalog.get(entry_id)
    if entry.forced_check:
        return entry
    return next(
        (e for e in catalog.entries.values() if e.playbook == entry.playbook and e.forced_check and not e.parameters),
        None,
    )


def job_title(catalog: Catalog, spec: JobSpec) -> str:
    """A job's title, named as what it is: a check of "site" is "Check site (dry run)" (or "Deploy
    site (check only)" when the catalog has no check entry for it), never "Deploy site"."""
    if not spec.check or spec.entry.forced_check:
        return spec.entry.title
    variant = check_variant(catalog, spec.entry.id)
    return variant.title if variant is not None else f"{spec.entry.title} (check only)"


def run_variant(catalog: Catalog, entry_id: str) -> str | None:
    """The catalog entry that converges the same playbook for real (the entry itself unless it is check-only)."""
    entry = catalog.get(entry_id)
    if not entry.forced_check:
        return entry.id
    for e in catalog.entries.values():
        if e.playbook == entry.playbook and not e.forced_check and not e.parameters:
            return e.id
    return None

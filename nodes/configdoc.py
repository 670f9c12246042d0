"""The configuration described from the structs themselves: an annotated default TOML per
role (`zqnode config default --role R`) and the reference page (docs/config.md).

A field's description is its comment in the struct's source: the comment at the end of
its line, the comment lines aligned under it, and the comment lines just above it;
a struct's docstring describes its section. Nothing here repeats them, so the file a
node prints and the docs cannot drift from the code."""
from __future__ import annotations

import ast
import functools
import inspect
import io
import json
import re
import textwrap
import tokenize
import types
import typing

import msgspec

from zqnode.nodes.config import NodeConfig

# The sections each role reads (bus: every node).
ROLE_SECTIONS = {"bus": (), "chain": ("chain",), "manager": ("manager", "sealing"),
                 "scheduler": ("scheduler",), "worker": ("worker",), "poster": ("poster",)}
TOP_LEVEL = ("role", "name", "repo", "metrics_listen")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


# -- comments from the source ---------------------------------------------------------------
@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its description, from the comments around it in `cls`'s source."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, tuple[int, str]] = {}        # row -> (column, text)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.start[1], tok.string.lstrip("#").strip())
    lines = source.splitlines()

    def comment_only(row: int) -> bool:
        return row in comments and lines[row - 1].strip().startswith("#")

    fields = [node for node in ast.parse(source).body[0].body
              if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)]
    out: dict[str, str] = {}
    taken: set[int] = set()
    for node in fields:
        parts: list[str] = []
        row = node.lineno - 1                        # leading comment lines, nearest last
        above: list[str] = []
        while row >= 1 and comment_only(row) and row not in taken:
            above.insert(0, comments[row][1])
            row -= 1
        parts += above
        trailing = [comments[r] for r in range(node.lineno, node.end_lineno + 1)
                    if r in comments and not comment_only(r)]
        parts += [text for _, text in trailing]
        if trailing:                                 # aligned continuation lines
            column, row = trailing[-1][0], node.end_lineno + 1
            while comment_only(row) and comments[row][0] == column:
                parts.append(comments[row][1])
                taken.add(row)
                row += 1
        text = " ".join(t for t in map(_unruled, parts) if t)
        out[node.target.id] = text
    return out


def _unruled(comment: str) -> str:
    """A comment without the rules around a heading (`-- x --`); "-1: none" keeps its sign."""
    return re.sub(r"^-{2,}\s*|\s*-{2,}$", "", comment.strip()).strip()


def struct_doc(cls: type) -> str:
    return (inspect.getdoc(cls) or "") if cls.__doc__ else ""


def section_doc(cls: type, fallback: str = "") -> str:
    """A section's description: its struct's docstring, else its module's when that is a
    `config` module (one that holds the settings and nothing else), else `fallback`."""
    doc = struct_doc(cls)
    if not doc and cls.__module__.endswith(".config"):
        doc = inspect.getdoc(inspect.getmodule(cls)) or ""
    return doc or fallback


# -- types ----------------------------------------------------------------------------------
def type_name(tp) -> str:
    """A short readable name for a field's type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        named = [type_name(a) for a in args if a is not type(None)]
        return " | ".join(named) + (" (or unset)" if type(None) in args else "")
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return "table"
    return getattr(tp, "__name__", str(tp))


def _struct_of(tp) -> type | None:
    return tp if isinstance(tp, type) and issubclass(tp, msgspec.Struct) else None


def _list_of_structs(tp) -> type | None:
    if typing.get_origin(tp) is list:
        (arg,) = typing.get_args(tp) or (None,)
        return _struct_of(arg)
    return None


def fields_of(cls: type) -> list[tuple[str, object, object]]:
    """(name, type, default value) of each field, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in msgspec.structs.fields(cls):
        if f.default is not msgspec.NODEFAULT:
            default = f.default
        elif f.default_factory is not msgspec.NODEFAULT:
            default = f.default_factory()
        else:
            default = msgspec.NODEFAULT
        out.append((f.name, hints[f.name], default))
    return out


def section_types() -> dict[str, type]:
    hints = typing.get_type_hints(NodeConfig)
    return {name: hints[name] for name in hints if _struct_of(hints[name])}


# -- TOML ----------------------------------------------------------------------------------
def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):                     # TOML has no null: an unset key is left out
        items = [f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(v, msgspec.Struct):
        return toml_value(msgspec.to_builtins(v))
    raise TypeError(f"no TOML for {type(v).__name__}")


def config_toml(cfg) -> str:
    """A node's configuration as a file nodes.config.load reads back equal: its identity,
    bus and its role's sections, one line each (inline tables)."""
    data = msgspec.to_builtins(cfg)
    keys = ("role", "name", "repo", "bus", *ROLE_SECTIONS[cfg.role])
    return "".join(f"{k} = {toml_value(data[k])}\n" for k in keys if data.get(k) is not None)


def toml_key(k) -> str:
    k = str(k)
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _wrap(text: str, prefix: str = "# ") -> list[str]:
    """Comment lines: a docstring keeps its own lines, a field's comment is wrapped."""
    if "\n" in text:
        return [(prefix + line).rstrip() for line in text.splitlines()]
    return [prefix + line for line in textwrap.wrap(text, 88 - len(prefix))] if text else []


def _table(out: list[str], path: str, cls: type, value, header: str, doc: str) -> None:
    """One table (`header` = "[path]" or "[[path]]") and the tables nested in it."""
    out.append("")
    out += _wrap(doc)
    out.append(header)
    comments = field_comments(cls)
    nested = []
    for name, tp, _ in fields_of(cls):
        v = getattr(value, name)
        sub, subs = _struct_of(tp), _list_of_structs(tp)
        if sub is not None:
            nested.append((name, sub, v, False))
            continue
        if subs is not None:
            nested.append((name, subs, v, True))
            continue
        out += _wrap(comments.get(name, ""))
        if v is None:
            out.append(f"# {name} = ...    ({type_name(tp)}; unset by default)")
        else:
            out.append(f"{name} = {toml_value(v)}")
    for name, sub, v, many in nested:
        doc = struct_doc(sub) or comments.get(name, "")
        if many:
            if not v:
                out += ["", *_wrap(doc), f"# [[{path}.{name}]]    (none)"]
            for item in v:
                _table(out, f"{path}.{name}", sub, item, f"[[{path}.{name}]]", doc)
                doc = ""
        else:
            _table(out, f"{path}.{name}", sub, v, f"[{path}.{name}]", doc)


def default_toml(role: str) -> str:
    """The default configuration of a `role` node, every key with its description. It
    loads back (nodes.config.load) to exactly the configuration a node gets without a
    file."""
    if role not in ROLE_SECTIONS:
        raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLE_SECTIONS)})")
    comments = field_comments(NodeConfig)
    sections = section_types()
    out = [f"# zqnode {role} node: the default configuration (zqnode config default --role {role}).",
           "# Every key is optional; a key or value that is wrong stops the node at start, naming it.",
           "# Give it with: zqnode start --role ROLE --config FILE  (command-line options win).", ""]
    for name in TOP_LEVEL:
        out += _wrap(comments.get(name, ""))
        out.append(f"{name} = {toml_value(role if name == 'role' else '')}")
    for section in ("bus", *ROLE_SECTIONS[role]):
        cls = sections[section]
        doc = section_doc(cls, comments.get(section, ""))
        _table(out, section, cls, cls(), f"[{section}]", doc)
    return "\n".join(out) + "\n"


# -- the reference page ----------------------------------------------------------------------
def _default_text(v) -> str:
    if v is None:
        return "unset"
    if v is msgspec.NODEFAULT:
        return "required"
    if isinstance(v, msgspec.Struct) or (isinstance(v, list) and v and isinstance(v[0], msgspec.Struct)):
        return "see below"
    return f"`{toml_value(v)}`"


def table_cell(text: str) -> str:
    """Text for a Markdown table cell (a "|" would end the cell)."""
    return text.replace("|", "\\|")


def _reference_table(out: list[str], title: str, cls: type, value, note: str = "") -> None:
    out += ["", f"### `{title}`", ""]
    doc = section_doc(cls) if "." not in title else struct_doc(cls)
    if doc:
        out += [doc, ""]
    if note:
        out += [note, ""]
    out += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    comments = field_comments(cls)
    nested = []
    for name, tp, _ in fields_of(cls):
        v = getattr(value, name)
        sub, subs = _struct_of(tp), _list_of_structs(tp)
        if sub is not None or subs is not None:
            nested.append((name, sub or subs, v, subs is not None))
        out.append(f"| `{name}` | {table_cell(type_name(tp))} | {table_cell(_default_text(v))} | "
                   f"{table_cell(comments.get(name, ''))} |")
    for name, sub, v, many in nested:
        inner = f"{title.strip('[]')}.{name}"
        _reference_table(out, f"[[{inner}]]" if many else f"[{inner}]", sub,
                         (v[0] if v else sub()) if many else v)


def reference_markdown() -> str:
    comments = field_comments(NodeConfig)
    out = ["# Configuration reference", "",
           "<!-- generated by tools/gen_docs.py from the config structs; do not edit by hand -->", "",
           "A node reads one TOML file, `zqnode start --role ROLE --config FILE`; every key is",
           "optional. A wrong key or value stops the node at start with the file, the key's path",
           "and the reason (`node.toml: $.bus.heartbeat_s: heartbeat_s must be positive`).",
           "Command-line options (`--name`, `--repo`, `--bus`, `--metrics-listen`) win over the",
           "file. `zqnode config default --role ROLE` prints a role's defaults, annotated;",
           "`zqnode config check FILE --role ROLE` checks a file without starting anything.", "",
           "Which sections a role reads: " + "; ".join(
               f"{role}: " + ", ".join(f"`[{s}]`" for s in ("bus", *secs))
               for role, secs in ROLE_SECTIONS.items()) + ".", "",
           "Environment: `ZQNODE_BUS` (the hub's address for commands), `ZQNODE_KEY_DIR`,",
           "`ZQNODE_HUB_KEY`, `ZQNODE_BUS_SECURITY` (see `[bus]`), `ZQNODE_PARENT_CACHE`; on a",
           "worker, Lotus-style resource overrides such as `PC1_32G_MAX_CONCURRENT=2` or",
           "`FIL_PROOFS_USE_MULTICORE_SDR=1` are added to `worker.resource_env` (the",
           "environment wins over the file).", "", "## Top level", "",
           "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, tp, default in fields_of(NodeConfig):
        if name in TOP_LEVEL:
            out.append(f"| `{name}` | {table_cell(type_name(tp))} | {table_cell(_default_text(default))} | "
                       f"{table_cell(comments.get(name, ''))} |")
    out += ["", "## Sections"]
    for section, cls in section_types().items():
        read_by = comments.get(section, "")
        _reference_table(out, f"[{section}]", cls, cls(), f"Read by: {read_by}." if read_by else "")
    return "\n".join(out) + "\n"

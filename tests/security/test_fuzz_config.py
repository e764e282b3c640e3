"""Property-based fuzzing of the configuration loader: arbitrary YAML text, arbitrary
mappings, and valid configurations with one part replaced.

The contract (paxoi.server.config.load_config / parse_config): a valid PaxoiConfig, or
ConfigError naming what is wrong; nothing else escapes. An accepted configuration
survives `dump_config` and parsing again unchanged. The coverage-guided counterpart is
fuzz/fuzz_config.py; the regressions below are what it and these tests found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from paxoi.core.errors import ConfigError
from paxoi.server.config import PaxoiConfig, dump_config, load_config, parse_config

FAST = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

VALID: dict[str, Any] = {
    "cluster": "fuzz",
    "servers": {
        0: {"host": "127.0.0.1", "port": 7000},
        1: {"host": "10.0.0.2", "port": 7001, "bind": "0.0.0.0"},
        2: {"host": "db3.example.net", "port": 7002, "roles": ["acceptor", "learner"]},
    },
    "tick_ms": 10.0,
    "timing": {"heartbeat": 5, "election": 30},
    "limits": {"window": 64, "max_frame": 1 << 20},
    "storage": {"dir": "data", "fsync": True},
    "faults": {"msg_drop_rate": 0.0},
    "tls": {"ca": "certs/ca.pem", "cert": "certs/n{id}.pem", "client_cert": "certs/c.pem"},
    "auth": {"clients": "token", "tokens": {"alice": "sha256:" + "ab" * 32}},
}

yaml_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=16),
    st.binary(max_size=8),
    st.dates(),
    st.datetimes(),
)
yaml_values = st.recursive(
    yaml_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers(-3, 2**33)), inner, max_size=4),
    ),
    max_leaves=15,
)
keys = st.sampled_from(
    [
        "cluster",
        "servers",
        "f",
        "tick_ms",
        "policy",
        "timing",
        "limits",
        "storage",
        "faults",
        "tls",
        "auth",
        "host",
        "port",
        "bind",
        "roles",
        "ca",
        "cert",
        "key",
        "clients",
        "tokens",
        "token_file",
        "dir",
    ]
)


def load_text(tmp_path: Path, text: str | bytes) -> PaxoiConfig | None:
    path = tmp_path / "cluster.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        return load_config(path)
    except ConfigError:
        return None


def parse_or_refuse(data: Any) -> PaxoiConfig | None:
    try:
        config = parse_config(data)
    except ConfigError:
        return None
    # What was accepted survives a dump and a parse (LocalCluster relies on this).
    assert parse_config(yaml.safe_load(dump_config(config))) == config
    return config


@FAST
@given(text=st.text(max_size=300))
@example(text="x: 2001-13-01")  # PyYAML's datetime raised ValueError
@example(text="a: " + "[" * 3000 + "]" * 3000)  # and the composer, RecursionError
@example(text='servers: {0: {port: 1}}\nstorage: {dir: "a\\0b"}')  # resolve(): ValueError
@example(text="servers: {99999999999999999999999: {port: 1}}")  # msgpack would overflow
@example(text="servers: !!python/object:os.system {}")
@example(text="!!timestamp :0{port: 7000}")  # AttributeError (found by fuzz/fuzz_config.py)
@example(text="servers: !!int abc")
@example(text="tick_ms: !!float x")
@example(text="&a [*a]")
@example(text="\ufeff\t")
def test_any_text(tmp_path: Path, text: str) -> None:
    load_text(tmp_path, text)


@FAST
@given(data=st.binary(max_size=200))
@example(data=b"\xff\xfe")
def test_any_bytes(tmp_path: Path, data: bytes) -> None:
    load_text(tmp_path, data)


@FAST
@given(st.dictionaries(st.one_of(keys, st.text(max_size=8)), yaml_values, max_size=6))
def test_any_mapping(data: dict[Any, Any]) -> None:
    parse_or_refuse(data)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    return out


def _replace(obj: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(obj)
    copy[path[0]] = _replace(obj[path[0]], path[1:], new)
    return copy


def test_the_base_configuration_is_valid() -> None:
    config = parse_or_refuse(VALID)
    assert config is not None and config.tls is not None
    assert config.tls.node_cert(2) == Path("certs/n2.pem")


@FAST
@given(st.sampled_from(_paths(VALID)[1:]), yaml_values)
def test_a_valid_configuration_with_one_part_replaced(path: tuple[Any, ...], new: Any) -> None:
    parse_or_refuse(_replace(VALID, path, new))


@FAST
@given(st.sampled_from(_paths(VALID)[1:]), yaml_values)
def test_the_same_through_a_yaml_file(tmp_path: Path, path: tuple[Any, ...], new: Any) -> None:
    text = yaml.safe_dump(_replace(VALID, path, new), allow_unicode=True)
    config = load_text(tmp_path, text)
    if config is not None and config.tls is not None:
        # Relative TLS paths are anchored at the file's directory, as storage.dir is.
        assert config.tls.ca.is_absolute()
        assert Path(config.tls.node_cert(0)).is_absolute()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"auth": {"clients": "cert"}, "tls": None}, "auth.clients: cert needs a tls section"),
        ({"auth": {"clients": "token", "tokens": {}}}, "auth.tokens: token auth needs"),
        (
            {"tls": {"ca": "x", "cert": "n{name}.pem"}},
            "tls.cert: Value error, the only placeholder",
        ),
        ({"tls": {"ca": "a\x00b"}}, "tls.ca: Value error, must not contain a NUL"),
        ({"auth": {"tokens": {"a-b": "sha256:" + "0" * 64}}}, "auth.tokens.a-b.[key]"),
        ({"auth": {"tokens": {"a": "plaintext"}}}, "auth.tokens.a: String should match"),
        ({"tls": {"ca": "x", "certificate": "y"}}, "tls.certificate: Extra inputs"),
        ({"servers": {2**40: {"port": 1}}}, "must be between 0 and 4294967295"),
    ],
)
def test_security_fields_are_checked_with_their_path(change: dict[str, Any], message: str) -> None:
    data = {**VALID, **change}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value)


def test_relative_paths_are_relative_to_the_configuration_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "cluster.yaml"
    path.write_text(yaml.safe_dump({**VALID, "auth": {**VALID["auth"], "token_file": "t"}}))
    config = load_config(path)
    base = path.parent.resolve()
    assert config.tls is not None
    assert config.tls.ca == base / "certs/ca.pem"
    assert config.tls.node_cert(1) == base / "certs/n1.pem"
    assert config.tls.node_key(1) == base / "certs/node-1.key"  # default, next to the CA
    assert config.tls.client_key_path() == base / "certs/c.key"
    assert config.auth.token_file == base / "t"

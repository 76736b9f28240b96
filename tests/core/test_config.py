from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from multilens.config import apply_overrides, config_hash, from_dict, load_toml
from multilens.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    k: int = 3


@dataclass(frozen=True)
class Cfg:
    lr: float = 0.1
    widths: tuple[int, ...] = (1, 2)
    mode: Literal["a", "b"] = "a"
    inner: Inner = Inner()


def test_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match="`x.lrr`"):
        from_dict(Cfg, {"lrr": 1}, where="x")


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="`x.lr` must be a number"):
        from_dict(Cfg, {"lr": "fast"}, where="x")
    with pytest.raises(ConfigError, match=r"`x.widths\[1\]` must be an int"):
        from_dict(Cfg, {"widths": [1, 2.5]}, where="x")
    with pytest.raises(ConfigError, match="`x.mode` must be one of"):
        from_dict(Cfg, {"mode": "c"}, where="x")
    with pytest.raises(ConfigError, match="`x.inner.k`"):
        from_dict(Cfg, {"inner": {"k": True}}, where="x")


def test_base_and_overrides():
    base = Cfg(lr=0.5)
    c = from_dict(Cfg, apply_overrides({}, ["widths=4,8", "inner.k=7"]), base=base)
    assert c == Cfg(lr=0.5, widths=(4, 8), inner=Inner(7))


def test_hash_is_stable_and_order_free():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash(Cfg()) != config_hash(Cfg(lr=0.2))
    assert len(config_hash(Cfg())) == 16


def test_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "nope.toml")
    p = tmp_path / "bad.toml"
    p.write_text("a = [1,")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(p)

import pytest

from gateway.config import ConfigError, load_settings

GOOD = """
listen: {port: 9100}
versions:
  - {name: base, base_url: "http://127.0.0.1:8000/v1/", model: base}
  - {name: ft, base_url: "http://127.0.0.1:8000/v1", model: ft-lora, api_key_env: FT_KEY, metadata: {run: r42}}
aliases:
  - {name: bot, stable: base, candidate: ft, weight_pct: 5}
"""


def write(tmp_path, text):
    p = tmp_path / "cliffguard.yaml"
    p.write_text(text)
    return p


def test_loads_yaml(tmp_path):
    s = load_settings(write(tmp_path, GOOD))
    assert s.listen.port == 9100 and s.versions[0].base_url == "http://127.0.0.1:8000/v1"
    assert s.aliases[0].weight_pct == 5 and s.versions[1].metadata == {"run": "r42"}


def test_env_overrides_every_level(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIFFGUARD_LISTEN__PORT", "9200")
    monkeypatch.setenv("CLIFFGUARD_REDIS_URL", "redis://r:6379/1")
    monkeypatch.setenv("CLIFFGUARD_TIMEOUTS__READ", "12.5")
    monkeypatch.setenv("CLIFFGUARD_ALIASES", '[{"name": "bot", "stable": "ft"}]')
    s = load_settings(write(tmp_path, GOOD))
    assert (s.listen.port, s.redis_url, s.timeouts.read) == (9200, "redis://r:6379/1", 12.5)
    assert s.aliases[0].stable == "ft" and s.aliases[0].candidate is None


@pytest.mark.parametrize("text,needle", [
    (GOOD.replace("port: 9100", "port: nine"), "listen.port"),
    (GOOD.replace("model: base}", "model: base, colour: red}"), "versions.0.colour: unknown field"),
    (GOOD.replace("stable: base", "stable: nope"), "stable version 'nope' is not declared"),
    (GOOD.replace("weight_pct: 5", "weight_pct: 500"), "aliases.0.weight_pct"),
    (GOOD.replace('"http://127.0.0.1:8000/v1/"', "ftp://x"), "versions.0.base_url"),
    ("versions: [", "not valid YAML"),
    ("- a\n- b\n", "mapping at the top level"),
])
def test_bad_config_names_the_field(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text))
    assert needle in str(e.value)


def test_bad_env_override_names_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIFFGUARD_WORKERS", "many")
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, GOOD))
    assert "workers" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for name in ("examples/cliffguard.yaml", "bench/cliffguard-bench.yaml"):
        s = load_settings(root / name)
        assert s.versions and s.aliases
    bench = load_settings(root / "bench/cliffguard-bench.yaml")
    assert bench.classifier.taxonomy.categories[0].rules[0].scope == "last_user"

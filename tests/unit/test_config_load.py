"""Loading configurations: ulogd.conf syntax, TOML, plugin= lines, stacks and keys."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import ClassVar

import pytest

from tests.outputs import Delivered, ListTransport
from tests.ulogd_ref import ULOGPY
from ulogpy.config.errors import ConfigError
from ulogpy.config.load import load_config, load_embedded_default
from ulogpy.config.ulogdconf import parse_ulogd_conf
from ulogpy.core.keys import STRING, U8, U16, keys
from ulogpy.core.plugin import FilterPlugin, InputPlugin, OutputPlugin
from ulogpy.core.registry import registry, validate_plugin_class
from ulogpy.core.stack import Pipeline, build_pipeline, plugin_name_from_so
from ulogpy.daemon.runner import attach
from ulogpy.delivery.options import queue_options

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "tests" / "fixtures" / "configs"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def pipeline_of(path: Path) -> Pipeline:
    return build_pipeline(load_config(str(path)))


def instance(pipeline: Pipeline, inst_id: str):
    found = [i for i in pipeline.instances() if i.id == inst_id]
    assert found, inst_id
    return found[0]


# --------------------------------------------------------------------- ulogd.conf lexing

LONG_PATH = "/tmp/" + "d" * 150 + "/" + "f" * 140 + ".log"


def debian_style_text() -> bytes:
    """Every lexical feature ulogd.conf files rely on (and the two ulogd refuses)."""
    lines = [
        "# Example configuration for ulogd",
        "# Adapted to Debian by Achilleas Kotsis",
        "",
        "[global]",
        "######################################################################",
        "# GLOBAL OPTIONS",
        "######################################################################",
        "",
        "# logfile for status messages",
        'logfile="/var/log/ulog/ulogd.log"',
        "   ",
        "# loglevel: debug(1), info(3), notice(5), error(7) or fatal(8) (default 5)",
        "loglevel=3",
        "",
        '#plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_inppkt_NFLOG.so"',
        "stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU",
        "stack=ct2:NFCT,ip2str1:IP2STR,json1:JSON",
        "",
        "[ct1]",
        "\thash_enable = 0",
        "event_mask=0x00000005 # NEW and DESTROY",
        "hash_buckets=010",
        "hash_max_entries 4096",
        "netlink_resync_timeout==30",
        'accept_src_filter="10.0.0.0/8,192.168.0.0/16" # two networks',
        "  # an indented comment",
        "",
        "[ct2]",
        "pollinterval=0",
        "[emu1]",
        f'file="{LONG_PATH}"',
        "sync=1\r",
        "",
        "[json1]",
        'device="fw = one # not a comment"',
        "sync 0",
        'file="/var/log/ulog/ulogd.json"',  # last line, no newline below
    ]
    return "\n".join(lines).encode()


def test_debian_syntax_features_load_to_the_right_values(tmp_path: Path) -> None:
    path = write(tmp_path, "ulogd.conf", debian_style_text())
    assert not path.read_bytes().endswith(b"\n")
    assert any(len(line) > 254 for line in path.read_text().splitlines())
    config = load_config(str(path))
    g = config.global_options
    assert g.logfile == "/var/log/ulog/ulogd.log"
    assert g.loglevel == 3
    assert g.plugin == []
    assert g.stack == [
        "ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU",
        "ct2:NFCT,ip2str1:IP2STR,json1:JSON",
    ]
    pipe = build_pipeline(config)
    ct1 = instance(pipe, "ct1").config
    assert ct1.hash_enable == 0
    assert ct1.event_mask == 5  # hex, trailing comment ignored
    assert ct1.hash_buckets == 8  # leading 0 is octal, as in ulogd
    assert ct1.hash_max_entries == 4096  # `key value`
    assert ct1.netlink_resync_timeout == 30  # `key==value`
    assert ct1.accept_src_filter == "10.0.0.0/8,192.168.0.0/16"
    assert ct1.pollinterval == 0 and ct1.reliable == 0  # defaults kept
    emu = instance(pipe, "emu1").config
    assert emu.file == LONG_PATH  # a line longer than 254 characters
    assert emu.sync == 1  # CRLF line end
    js = instance(pipe, "json1").config
    assert js.device == "fw = one # not a comment"  # quotes keep spaces, = and #
    assert js.sync == 0
    assert js.file == "/var/log/ulog/ulogd.json"  # the last line, without newline
    # line numbers are remembered for later errors
    entry = config.section("ct1").get_all("hash_buckets")[0]
    assert entry.line == 22


@pytest.mark.parametrize(
    ("text", "value"),
    [("0x10", 16), ("0X1f", 31), ("010", 8), ("0", 0), ("42", 42), ("+7", 7), ("-1", -1),
     ("0x00000007", 7)],
)
def test_integer_forms(text: str, value: int, tmp_path: Path) -> None:
    """Decimal, 0x hex and leading-0 octal as strtoul(…, 0) reads them."""
    path = write(
        tmp_path, "ints.conf",
        f"[global]\nstack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n[ct1]\n"
        f"hash_max_entries={text}\n[json1]\n",
    )
    assert instance(pipeline_of(path), "ct1").config.hash_max_entries == value


def test_installed_debian_ulogd_conf_parses() -> None:
    """The real /etc/ulogd.conf of the Debian package reads without complaint."""
    path = Path("/etc/ulogd.conf")
    if not path.exists():
        pytest.skip("no /etc/ulogd.conf (Debian package ulogd2)")
    doc = parse_ulogd_conf(path.read_text(), str(path))
    assert doc.sections["global"].get_all("loglevel")[0].value == "3"
    assert doc.sections["global"].get_all("logfile")[0].value == "syslog"
    assert [e.value for e in doc.sections["log2"].get_all("group")] == ["1"]
    assert doc.sections["emu1"].get_all("file")[0].value == "/var/log/ulog/syslogemu.log"
    assert doc.sections["ct2"].get_all("hash_enable")[0].value == "0"


# ------------------------------------------------------------------------- plugin= lines


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/usr/lib/x86_64-linux-gnu/ulogd/ulogd_inpflow_NFCT.so", "NFCT"),
        ("/usr/lib/x86_64-linux-gnu/ulogd/ulogd_inppkt_NFLOG.so", "NFLOG"),
        ("/usr/lib/x86_64-linux-gnu/ulogd/ulogd_raw2packet_BASE.so", "BASE"),
        ("/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_IP2STR.so", "IP2STR"),
        ("/usr/lib/x86_64-linux-gnu/ulogd/ulogd_output_JSON.so", "JSON"),
        ("ulogd_output_LOGEMU.so", "LOGEMU"),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", None),
        ("/usr/lib/ulogd/ulogd_NFCT.so", None),
        ("/usr/lib/ulogd/libulogd_output_JSON.so", None),
    ],
)
def test_plugin_name_from_so(path: str, name: str | None) -> None:
    assert plugin_name_from_so(path) == name


def test_plugin_lines_restrict_the_available_plugins(tmp_path: Path) -> None:
    """As in ulogd: once plugin= lines exist, only the plugins they load may be used."""
    so = "/usr/lib/x86_64-linux-gnu/ulogd/ulogd_{}.so"
    head = "[global]\n" + "".join(
        f'plugin="{so.format(n)}"\n'
        for n in ("inpflow_NFCT", "filter_IP2STR", "filter_PRINTFLOW", "output_LOGEMU")
    )
    ok = write(tmp_path, "ok.conf", head +
               "stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU\n[ct1]\n[emu1]\n")
    assert len(pipeline_of(ok).stacks) == 1
    refused = write(tmp_path, "refused.conf", head +
                    "stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n[ct1]\n[json1]\n")
    with pytest.raises(ConfigError) as err:
        pipeline_of(refused)
    assert "'JSON' is not loaded by any plugin= line" in str(err.value)
    assert err.value.line == 6
    # without any plugin= line every built-in plugin is available
    free = write(tmp_path, "free.conf",
                 "[global]\nstack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n[ct1]\n[json1]\n")
    assert len(pipeline_of(free).stacks) == 1


def test_plugin_line_for_a_plugin_ulogpy_lacks_is_only_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ulogd ignores a plugin it cannot load; ulogpy warns and refuses only stacks using it."""
    missing = "XYZZYDB"
    assert missing not in registry()
    path = write(
        tmp_path, "pg.conf",
        "[global]\n"
        f'plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_output_{missing}.so"\n'
        'plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_inpflow_NFCT.so"\n'
        "plugin=IP2STR\nplugin=JSON\n"
        "stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n[ct1]\n[json1]\n",
    )
    with caplog.at_level(logging.WARNING, logger="ulogpy"):
        assert len(pipeline_of(path).stacks) == 1
    assert any(missing in r.getMessage() and ":2" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------- ulogd.conf == TOML


def test_equivalent_ulogd_conf_and_toml_give_the_same_model() -> None:
    conf = load_config(str(CONFIGS / "equivalent.conf"))
    toml = load_config(str(CONFIGS / "equivalent.toml"))
    assert conf.document.format == "ulogd" and toml.document.format == "toml"
    assert conf.global_options == toml.global_options
    assert conf.global_options.loglevel == 3
    assert conf.global_options.stats_interval == 60
    assert len(conf.global_options.plugin) == 5
    a, b = build_pipeline(conf), build_pipeline(toml)
    assert [s.text for s in a.stacks] == [s.text for s in b.stacks]
    ids_a = [(i.id, i.name) for i in a.instances()]
    assert ids_a == [(i.id, i.name) for i in b.instances()]
    for x, y in zip(a.instances(), b.instances(), strict=True):
        assert x.config == y.config, x
        assert x.config.model_dump() == y.config.model_dump()
    ct1 = instance(a, "ct1").config
    assert (ct1.event_mask, ct1.netlink_socket_buffer_size) == (7, 131072)
    json1 = instance(a, "json1").config
    assert (json1.device, json1.port, json1.eventv1) == ("fw one", "5140", 1)


def test_toml_stack_may_be_one_string(tmp_path: Path) -> None:
    one = write(tmp_path, "one.toml",
                '[global]\nstack = "ct1:NFCT,ip2str1:IP2STR,json1:JSON"\n[ct1]\n'
                "hash_enable = true\n[json1]\n")
    config = load_config(str(one))
    assert config.global_options.stack == ["ct1:NFCT,ip2str1:IP2STR,json1:JSON"]
    assert instance(build_pipeline(config), "ct1").config.hash_enable == 1


# -------------------------------------------------------------------- shipped defaults


@pytest.mark.parametrize("path", [REPO / "ulogpy.toml", REPO / "ulogpy" / "data" / "ulogpy.toml"])
def test_shipped_config_passes_check(path: Path) -> None:
    proc = subprocess.run([ULOGPY, "--check", "-c", str(path)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{path}: OK, 5 stack(s)")


def test_embedded_default_is_the_shipped_file() -> None:
    shipped = load_config(str(REPO / "ulogpy.toml"))
    embedded = load_embedded_default()
    assert embedded.global_options == shipped.global_options
    ct1 = instance(build_pipeline(embedded), "ct1").config
    assert (ct1.hash_enable, ct1.event_mask) == (0, 5)
    assert (ct1.conntrack_acct, ct1.conntrack_timestamp) == (1, 1)


# ---------------------------------------------------------------- stacks: shared ids


def test_shared_input_id_is_one_instance_filters_and_outputs_are_not(tmp_path: Path) -> None:
    path = write(
        tmp_path, "shared.conf",
        "[global]\n"
        "stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU\n"
        "stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n"
        "stack=ct1:NFCT,ip2str1:IP2STR,print1:PRINTFLOW,emu1:LOGEMU\n"
        "[ct1]\nhash_enable=0\n[emu1]\n[json1]\n",
    )
    pipe = pipeline_of(path)
    s1, s2, s3 = pipe.stacks
    assert s1.input is s2.input is s3.input
    assert pipe.inputs == [s1.input]
    assert pipe.stacks_of(s1.input) == [s1, s2, s3]
    assert s1.filters[0] is not s2.filters[0] and s1.filters[0] is not s3.filters[0]
    assert s1.filters[0].id == s2.filters[0].id == "ip2str1"
    assert s1.output is not s3.output and s1.output.id == s3.output.id == "emu1"
    # ct1 once; ip2str1 x3, print1 x2, emu1 x2, json1 x1
    assert len(pipe.instances()) == 1 + 3 + 2 + 2 + 1
    assert [s.line for s in pipe.stacks] == [2, 3, 4]


# ------------------------------------------------- test plugins for key resolution

class TIN(InputPlugin):
    name = "TIN"
    output_keys = keys(("t.val", STRING), ("oob.family", U8), ("t.in", STRING))


class TSETA(FilterPlugin):
    name = "TSETA"
    output_keys = keys(("t.val", STRING))

    def interp(self, record: dict) -> None:
        record["t.val"] = "A"


class TSETB(TSETA):
    name = "TSETB"

    def interp(self, record: dict) -> None:
        record["t.val"] = "B"


class TSETC(TSETA):
    name = "TSETC"

    def interp(self, record: dict) -> None:
        record["t.val"] = "C"


class TREAD(FilterPlugin):
    name = "TREAD"
    input_keys = keys(("t.val", STRING))
    output_keys = keys(("t.seen", STRING))

    def interp(self, record: dict) -> None:
        record["t.seen"] = record.get("t.val")


class TDUP(FilterPlugin):
    """Gives a name the input already gives, with another type, plus a new one."""

    name = "TDUP"
    output_keys = keys(("oob.family", U16), ("t.extra", STRING))

    def interp(self, record: dict) -> None:
        record["oob.family"] = 10
        record["t.extra"] = "x"


class TCAP(OutputPlugin):
    """Keeps the records it gets in `got` (written from the loop, at each hand-over)."""

    name = "TCAP"
    input_keys = keys(("t.seen", STRING, True))
    options = queue_options()
    got: ClassVar[list[dict]] = []

    def configure(self) -> None:
        self.transport = ListTransport(TCAP.got)


TEST_PLUGINS = (TIN, TSETA, TSETB, TSETC, TREAD, TDUP, TCAP)


@pytest.fixture
def test_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the test plugins for this test only."""
    for cls in TEST_PLUGINS:
        validate_plugin_class(cls)
        monkeypatch.setitem(registry(), cls.name, cls)
    TCAP.got = []


def test_input_key_binds_to_nearest_upstream_provider(test_plugins, tmp_path: Path) -> None:
    path = write(
        tmp_path, "near.conf",
        "[global]\nstack=in1:TIN,a:TSETA,b:TSETB,r:TREAD,c:TSETC,cap:TCAP\n",
    )
    pipe = pipeline_of(path)
    runner = attach(pipe)
    pipe.inputs[0].emit({"t.val": "IN", "oob.family": 2})
    runner.after_batch()  # the batch goes to the outputs
    (rec,) = TCAP.got
    assert rec["t.seen"] == "B"  # nearest provider before the reader, not A, C or the input
    assert rec["t.val"] == "C"


def test_provider_after_the_consumer_does_not_count(test_plugins, tmp_path: Path) -> None:
    path = write(tmp_path, "late.conf", "[global]\nstack=in1:TIN,r:TREAD,cap:TCAP\n")
    pipeline_of(path)  # the input gives t.val: fine
    path = write(tmp_path, "late2.conf",
                 "[global]\nstack=ct1:NFCT,r:TREAD,a:TSETA,cap:TCAP\n[ct1]\n")
    with pytest.raises(ConfigError) as err:
        pipeline_of(path)
    assert "input key 't.val' of r:TREAD" in str(err.value)
    assert "TIN, TSETA, TSETB, TSETC" in str(err.value)
    # the real plugins: PRINTFLOW needs IP2STR *before* it
    path = write(tmp_path, "late3.conf",
                 "[global]\nstack=ct1:NFCT,print1:PRINTFLOW,ip2str1:IP2STR,emu1:LOGEMU\n"
                 "[ct1]\n[emu1]\n")
    with pytest.raises(ConfigError, match="orig.ip.saddr.str"):
        pipeline_of(path)


def test_shared_input_fans_out_copies(test_plugins, tmp_path: Path) -> None:
    path = write(tmp_path, "fan.conf",
                 "[global]\nstack=in1:TIN,a:TSETA,cap:TCAP\nstack=in1:TIN,r:TREAD,cap:TCAP\n")
    pipe = pipeline_of(path)
    assert len(pipe.inputs) == 1
    runner = attach(pipe)
    pipe.inputs[0].emit({"t.val": "IN"})
    runner.after_batch()  # the batch goes to the outputs
    assert [r.get("t.val") for r in TCAP.got] == ["A", "IN"]  # no stack sees another's change
    assert TCAP.got[1]["t.seen"] == "IN"


def test_shared_input_id_with_another_plugin_is_refused(test_plugins, tmp_path: Path) -> None:
    path = write(tmp_path, "clash.conf",
                 "[global]\nstack=in1:TIN,cap:TCAP\nstack=in1:NFCT,ip2str1:IP2STR,j:JSON\n"
                 "[in1]\n[j]\n")
    with pytest.raises(ConfigError) as err:
        pipeline_of(path)
    assert err.value.line == 3 and "already used for plugin TIN" in str(err.value)


def test_json_wildcard_keys_follow_stack_order_duplicates_first(
    test_plugins, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    path = write(
        tmp_path, "wild.conf",
        "[global]\nstack=ct1:NFCT,ip2str1:IP2STR,d:TDUP,json1:JSON\n[ct1]\n"
        f'[json1]\nfile="{out}"\ntimestamp=0\n',
    )
    pipe = pipeline_of(path)
    json1 = pipe.stacks[0].output
    nfct, ip2str = registry()["NFCT"], registry()["IP2STR"]
    expected = [k.name for k in nfct.output_keys] + [k.name for k in ip2str.output_keys]
    expected += ["oob.family", "t.extra"]
    names = [k.name for k in json1.stack_keys]
    assert names == expected  # one input per giver, as ulogd creates them (spec 3.5)
    assert names.count("oob.family") == 2
    # every occurrence typed as the nearest provider (TDUP's 16-bit key)
    assert {k.type for k in json1.stack_keys if k.name == "oob.family"} == {U16}
    # and the JSON line has the fields in that order
    out1 = Delivered(json1)
    out1.start()
    try:
        out1.write({"orig.ip.protocol": 17, "oob.family": 10, "t.extra": "x",
                    "orig.ip.saddr.str": "10.0.0.1", "ct.event": 1})
        out1.flush()
    finally:
        out1.stop()
    obj = json.loads(out.read_text())
    assert list(obj) == ["dvc", "orig.ip.protocol", "ct.event", "oob.family", "src_ip",
                         "t.extra"]
    assert obj["oob.family"] == 10

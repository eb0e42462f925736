"""Run the real ulogd 2.0.8 filter plugins in-process, as a test oracle.

The plugin shared objects (`/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_*.so`) only
import a handful of symbols from the daemon.  A tiny C stub, compiled once per test
session with the system C compiler, provides them; the plugin's constructor then
registers its descriptor with the stub, and we call its `interp` through ctypes with an
instance whose input keys point at values we fill from a ulogpy record.  So every
filter can be compared with what ulogd really computes, for any input, without a
kernel, a socket or a config file.

Layouts are those of ulogd 2.0.8 on x86-64 (`struct ulogd_key` is 72 bytes, its value
union at offset 56; `struct ulogd_plugin` has its key sets at 64/80 and `interp` at 96;
`struct ulogd_pluginstance` its key sets at 80/96 and `config_kset` at 112).  The
loader checks them against the descriptor it gets (plugin name, key names), so a
different build fails loudly instead of giving wrong answers.

Every input key is bound; a key absent from the record is bound to an invalid key
whose value is zero, as ulogd's keys are between events.

Value conventions follow ulogpy's records: ints, str, and bytes; bytes are stored in the
key itself (IP addresses, as ulogd's union holds them) unless the key is a pointer key
(`raw.*`, `arp.*hwaddr`), where they are passed by pointer.
"""

from __future__ import annotations

import atexit
import ctypes
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

PLUGIN_DIR = Path("/usr/lib/x86_64-linux-gnu/ulogd")
OK, ERR, STOP = 0, -1, -2

_STUB_C = r"""
#include <stdarg.h>
#include <stdio.h>
void *stub_plugin;
int stub_log_count;
int stub_log_level;
char stub_log_text[1024];
void ulogd_register_plugin(void *p) { stub_plugin = p; }
void __ulogd_log(int level, char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(stub_log_text, sizeof stub_log_text, fmt, ap);
    va_end(ap);
    stub_log_level = level;
    stub_log_count++;
}
int config_parse_file(const char *section, void *kset) { return 0; }
int ulogd_register_fd(void *ufd) { return 0; }
void ulogd_unregister_fd(void *ufd) { }
"""

# ulogd key types (include/ulogd/ulogd.h)
_STRING, _RAW, _RAWSTR = 0x8020, 0x8030, 0x8040
_IPADDR, _IP6ADDR = 0x0100, 0x0200
_VALID = 0x0001
_POINTER_KEYS = frozenset({"raw.mac", "raw.pkt", "raw.mac.saddr", "arp.shwaddr", "arp.dhwaddr"})


class UKey(ctypes.Structure):
    _fields_ = [
        ("len", ctypes.c_uint32), ("type", ctypes.c_uint16), ("flags", ctypes.c_uint16),
        ("name", ctypes.c_char * 32), ("ipfix_vendor", ctypes.c_uint32),
        ("ipfix_field", ctypes.c_uint16), ("cim_name", ctypes.c_void_p),
        ("value", ctypes.c_uint8 * 16),
    ]


assert ctypes.sizeof(UKey) == 72 and UKey.value.offset == 56


def skip_reason() -> str | None:
    """None when the oracle can run here, else why not."""
    if not (PLUGIN_DIR / "ulogd_filter_PRINTPKT.so").exists():
        return f"ulogd 2.0.8 plugins not installed in {PLUGIN_DIR} (Debian package ulogd2)"
    if shutil.which("cc") is None:
        return "no C compiler (cc) to build the ulogd symbol stub"
    return None


@cache
def _stub() -> ctypes.CDLL:
    tmp = Path(tempfile.mkdtemp(prefix="ulogd-stub-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # loaded already: unlink is fine
    src, lib = tmp / "stub.c", tmp / "libulogdstub.so"
    src.write_text(_STUB_C)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True,
                   capture_output=True)
    return ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)


def _addr(obj) -> int:
    return ctypes.addressof(obj)


class UlogdFilter:
    """One instance of a real ulogd filter plugin, called one record at a time."""

    def __init__(self, name: str) -> None:
        stub = _stub()
        so = PLUGIN_DIR / f"ulogd_filter_{name}.so"
        if not so.exists():
            so = PLUGIN_DIR / f"ulogd_raw2packet_{name}.so"
        self.lib = ctypes.CDLL(str(so), mode=ctypes.RTLD_LOCAL)
        self.stub = stub
        plugin = ctypes.c_void_p.in_dll(stub, "stub_plugin").value
        if not plugin:
            raise RuntimeError(f"{so} registered nothing")
        got = ctypes.string_at(plugin + 24).decode()
        if got != name:
            raise RuntimeError(f"{so}: descriptor names {got!r}, layout mismatch?")
        self.plugin = plugin
        self.inputs = self._template(plugin + 64)
        self.outputs = self._template(plugin + 80)
        interp = ctypes.c_void_p.from_address(plugin + 96).value
        self.interp = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(interp)
        self.config_kset = ctypes.c_void_p.from_address(plugin + 136).value

    @staticmethod
    def _template(addr: int) -> list[UKey]:
        keys = ctypes.c_void_p.from_address(addr).value
        num = ctypes.c_uint.from_address(addr + 8).value
        return [UKey.from_address(keys + i * 72) for i in range(num)]

    @property
    def input_names(self) -> list[str]:
        return [k.name.decode() for k in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [k.name.decode() for k in self.outputs]

    # -- config (MARK) ----------------------------------------------------------------
    def config_entry_value(self, option: str) -> ctypes.c_int:
        """The int value slot of `option` in the plugin's config template (2.0.8 layout:
        u8 num_ces, then from offset 8 272-byte entries: key[30], type, options,
        hit, value union at +40)."""
        base = self.config_kset
        count = ctypes.c_uint8.from_address(base).value
        for i in range(count):
            entry = base + 8 + i * 272
            if ctypes.string_at(entry) == option.encode():
                return ctypes.c_int.from_address(entry + 40)
        raise KeyError(option)

    # -- one event ----------------------------------------------------------------------
    def run(self, record: dict, use_config: bool = False) -> tuple[int, dict]:
        """Call interp with `record` as its inputs: (return code, valid outputs)."""
        keep: list = []
        n_in, n_out = len(self.inputs), len(self.outputs)
        inp = (UKey * max(n_in, 1))()
        out = (UKey * max(n_out, 1))()
        sources = (UKey * max(n_in, 1))()
        for i, tmpl in enumerate(self.inputs):
            ctypes.memmove(_addr(inp[i]), _addr(tmpl), 72)
            name = tmpl.name.decode()
            # Every input is bound, as in a stack that provides all keys; an absent one
            # is bound to an invalid, zeroed key (what ulogd's reset leaves behind).
            ctypes.c_void_p.from_address(_addr(inp[i]) + 56).value = _addr(sources[i])
            if record.get(name) is not None:
                sources[i].flags = _VALID
                self._store(sources[i], name, record[name], keep)
        for i, tmpl in enumerate(self.outputs):
            ctypes.memmove(_addr(out[i]), _addr(tmpl), 72)
            out[i].flags &= ~_VALID
        inst = ctypes.create_string_buffer(4096)
        base = _addr(inst)
        ctypes.c_void_p.from_address(base + 32).value = self.plugin
        ctypes.c_void_p.from_address(base + 80).value = _addr(inp)
        ctypes.c_uint.from_address(base + 88).value = n_in
        ctypes.c_void_p.from_address(base + 96).value = _addr(out)
        ctypes.c_uint.from_address(base + 104).value = n_out
        if use_config:
            ctypes.c_void_p.from_address(base + 112).value = self.config_kset
        rc = self.interp(base)
        result = {}
        for i, tmpl in enumerate(self.outputs):
            if out[i].flags & _VALID:
                result[tmpl.name.decode()] = self._load(out[i])
        return rc, result

    @staticmethod
    def _store(src: UKey, name: str, value, keep: list) -> None:
        slot = _addr(src) + 56
        if isinstance(value, str):
            buf = ctypes.create_string_buffer(value.encode())
            keep.append(buf)
            ctypes.c_void_p.from_address(slot).value = _addr(buf)
        elif isinstance(value, bytes) and name in _POINTER_KEYS:
            buf = ctypes.create_string_buffer(value, max(len(value), 1))
            keep.append(buf)
            ctypes.c_void_p.from_address(slot).value = _addr(buf)
            src.len = len(value)
        elif isinstance(value, bytes):
            ctypes.memmove(slot, value, len(value))
        else:
            ctypes.c_uint64.from_address(slot).value = int(value) & (2**64 - 1)

    @staticmethod
    def _load(key: UKey):
        slot = _addr(key) + 56
        if key.type in (_STRING, _RAWSTR):
            return ctypes.string_at(ctypes.c_void_p.from_address(slot).value).decode()
        if key.type in (_IPADDR, _IP6ADDR):
            return bytes(key.value)
        if key.type & 0x8000:
            return ctypes.c_void_p.from_address(slot).value
        width = {0x11: 1, 0x12: 2, 0x13: 4, 0x14: 8, 0x50: 1}.get(key.type & 0xFF, 8)
        return int.from_bytes(bytes(key.value[:width]), "little")

    # -- log messages the plugin wrote through __ulogd_log --------------------------------
    @property
    def log_count(self) -> int:
        return ctypes.c_int.in_dll(self.stub, "stub_log_count").value

    @property
    def last_log(self) -> str:
        return ctypes.string_at(ctypes.addressof(
            ctypes.c_char.in_dll(self.stub, "stub_log_text"))).decode()


@cache
def ulogd_filter(name: str) -> UlogdFilter:
    """The loaded oracle for plugin `name` (loaded once per process)."""
    return UlogdFilter(name)

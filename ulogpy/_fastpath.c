/* ulogpy._fastpath: the compiled per-event path, driven by the Python tables.
 *
 * Why C against the CPython API (not Cython): the work is a few loops over tables
 * that the Python code already declares -- a netlink attribute walker
 * (ulogpy.netlink.attrs tables, ulogpy.netlink.nflog's PACKET_ATTRS), IP2STR's
 * address conversion (its pair table and memo), a JSON line writer
 * (plugins/output/json.py's field table), text lines (ulogpy.render.textline's layout
 * tables) and database rows (ulogpy.db.render's column table) -- with dicts and strs
 * at both ends.  Written against the API they need no build dependency beyond gcc
 * and the Python headers, which every machine that runs scripts/setup has.
 *
 * Nothing here knows a netlink family or a ulogd key: every name, attribute
 * type, size and kind comes in from Python when a decoder or output is built.
 * Each object does what its pure-Python twin does, with the same results and the
 * same errors (same exception class, same message); tests/unit/test_fastpath.py
 * proves it on recorded messages and on fuzzed mutations of them.  Anything the
 * C code does not handle (a value of an unusual type, a string that is not
 * valid UTF-8) makes it return None, and the caller takes the Python way.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

static inline unsigned rd16h(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint64_t rd_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}
static inline uint64_t rd_host(const unsigned char *p, int n)
{
    uint16_t a; uint32_t b; uint64_t c;
    switch (n) {
    case 1: return p[0];
    case 2: memcpy(&a, p, 2); return a;
    case 4: memcpy(&b, p, 4); return b;
    default: memcpy(&c, p, 8); return c;
    }
}

/* Size and byte order of one struct format number: "B", ">H", "=I", "Q" ... */
static int parse_number(const char *fmt, int *size, int *big)
{
    *big = 1;  /* struct's default for our tables is given explicitly; no prefix = native */
    if (*fmt == '>' || *fmt == '!') { *big = 1; fmt++; }
    else if (*fmt == '=' || *fmt == '<' || *fmt == '@') { *big = 0; fmt++; }
    else *big = 0;
    switch (*fmt) {
    case 'B': *size = 1; break;
    case 'H': *size = 2; break;
    case 'I': *size = 4; break;
    case 'Q': *size = 8; break;
    default: return -1;
    }
    if (fmt[1] != '\0') return -1;
    if (*size == 1) *big = 1;
    return 0;
}

static PyObject *number(const unsigned char *p, int size, int big)
{
    return PyLong_FromUnsignedLongLong(big ? rd_be(p, size) : rd_host(p, size));
}

static void set_error(PyObject *cls, PyObject *msg)
{
    if (msg != NULL) {
        PyErr_SetObject(cls, msg);
        Py_DECREF(msg);
    }
}

/* ------------------------------------------------------- TLV walker (attrs) */

enum { K_SCALAR = 0, K_NESTED = 1, K_BYTES = 2, K_NESTED_RAW = 3, K_SKIP = 4 };

typedef struct tlv_table tlv_table;
typedef struct {
    int kind;          /* -1: no entry */
    int size;          /* payload size (SCALAR: at least; BYTES: exactly) */
    int big;           /* SCALAR byte order */
    PyObject *name;    /* output key (owned), NULL for SKIP / NESTED */
    int slot;          /* index of `name` in the walker's extras, or -1 */
    tlv_table *sub;
} tlv_entry;

struct tlv_table {
    int count;
    tlv_entry *entries;
};

static void tlv_free(tlv_table *t)
{
    if (t == NULL) return;
    for (int i = 0; i < t->count; i++) {
        Py_XDECREF(t->entries[i].name);
        tlv_free(t->entries[i].sub);
    }
    PyMem_Free(t->entries);
    PyMem_Free(t);
}

/* The position of `name` in `extras` ((name, default), ...), or -1. */
static int extra_slot(PyObject *extras, PyObject *name)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(extras); i++) {
        int eq = PyUnicode_Compare(PyTuple_GET_ITEM(PyTuple_GET_ITEM(extras, i), 0), name);
        if (eq == 0) return (int)i;
    }
    return -1;
}

/* The C form of one `attrs.Table` (type -> (kind, name, arg, size, extra)); an entry
   whose name is one of `extras` is marked with its slot (see Walker_split). */
static tlv_table *tlv_build(PyObject *table, PyObject *extras, int depth)
{
    if (depth > 16 || !PyDict_Check(table)) {
        PyErr_SetString(PyExc_ValueError, "attribute table: a dict, nested at most 16 deep");
        return NULL;
    }
    long top = -1;
    PyObject *key, *value;
    Py_ssize_t it = 0;
    while (PyDict_Next(table, &it, &key, &value)) {
        long t = PyLong_AsLong(key);
        if (t == -1 && PyErr_Occurred()) return NULL;
        if (t < 0 || t > 0x3FFF) {
            PyErr_SetString(PyExc_ValueError, "attribute type outside 0..0x3fff");
            return NULL;
        }
        if (t > top) top = t;
    }
    tlv_table *out = PyMem_Calloc(1, sizeof *out);
    if (out == NULL) return (tlv_table *)PyErr_NoMemory();
    out->count = (int)top + 1;
    out->entries = PyMem_Calloc(out->count ? out->count : 1, sizeof(tlv_entry));
    if (out->entries == NULL) { PyMem_Free(out); return (tlv_table *)PyErr_NoMemory(); }
    for (int i = 0; i < out->count; i++) {
        out->entries[i].kind = -1;
        out->entries[i].slot = -1;
    }
    it = 0;
    while (PyDict_Next(table, &it, &key, &value)) {
        tlv_entry *e = &out->entries[PyLong_AsLong(key)];
        int kind, size;
        PyObject *name, *arg, *extra;
        if (!PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 5) goto bad;
        kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(value, 0));
        name = PyTuple_GET_ITEM(value, 1);
        arg = PyTuple_GET_ITEM(value, 2);
        size = (int)PyLong_AsLong(PyTuple_GET_ITEM(value, 3));
        extra = PyTuple_GET_ITEM(value, 4);
        if (PyErr_Occurred() || !PyUnicode_Check(name)) goto bad;
        e->kind = kind;
        e->size = size;
        if (kind == K_SCALAR) {
            const char *fmt = PyUnicode_Check(extra) ? PyUnicode_AsUTF8(extra) : NULL;
            if (fmt == NULL || parse_number(fmt, &e->size, &e->big) < 0 || e->size != size)
                goto bad;
        } else if (kind == K_NESTED || kind == K_NESTED_RAW) {
            e->sub = tlv_build(arg, extras, depth + 1);
            if (e->sub == NULL) { tlv_free(out); return NULL; }
        } else if (kind != K_BYTES && kind != K_SKIP) {
            goto bad;
        }
        if (kind != K_SKIP && kind != K_NESTED) {
            Py_INCREF(name);
            PyUnicode_InternInPlace(&name);
            e->name = name;
            e->slot = extra_slot(extras, name);
        }
    }
    return out;
bad:
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "attribute table entry the compiled walker cannot take");
    tlv_free(out);
    return NULL;
}

typedef struct {
    PyObject_HEAD
    tlv_table *root;
    PyObject *malformed;  /* the exception class to raise */
    PyObject *extras;     /* ((name, default), ...): taken out of the record by split() */
    PyObject *rules;      /* ((key, allowed set, (name, ...)), ...): validity rules */
} Walker;

/* Walk buf[pos:end] into `out`.  With `slots` (split), a value whose entry has a slot
   goes there instead: the extras are never inserted into the record only to be taken
   out again (a dict insert and a delete each, some ten per conntrack event). */
static int tlv_walk(Walker *w, PyObject *bufobj, const unsigned char *buf, Py_ssize_t buflen,
                    Py_ssize_t pos, Py_ssize_t end, const tlv_table *t, PyObject *out,
                    PyObject **slots)
{
    while (pos < end) {
        if (pos + 4 > buflen) {
            set_error(w->malformed, PyUnicode_FromFormat("attribute header truncated at %zd", pos));
            return -1;
        }
        unsigned alen = rd16h(buf + pos), atype = rd16h(buf + pos + 2) & 0x3FFF;
        Py_ssize_t nxt = pos + alen;
        if (alen < 4 || nxt > end) {
            set_error(w->malformed,
                      PyUnicode_FromFormat("bad attribute length %u at %zd", alen, pos));
            return -1;
        }
        if ((int)atype < t->count && t->entries[atype].kind >= 0) {
            const tlv_entry *e = &t->entries[atype];
            Py_ssize_t p4 = pos + 4, plen = (Py_ssize_t)alen - 4;
            PyObject *v = NULL;
            switch (e->kind) {
            case K_SCALAR:
                if (plen < e->size) {
                    set_error(w->malformed, PyUnicode_FromFormat("attribute %U too short", e->name));
                    return -1;
                }
                v = number(buf + p4, e->size, e->big);
                break;
            case K_BYTES:
                if (plen != e->size) {
                    set_error(w->malformed, PyUnicode_FromFormat("attribute %U has length %zd",
                                                                 e->name, plen));
                    return -1;
                }
                v = PyBytes_FromStringAndSize((const char *)buf + p4, plen);
                break;
            case K_NESTED_RAW:
                v = PyBytes_FromStringAndSize((const char *)buf + pos, alen);
                break;
            default:
                break;
            }
            if (v != NULL) {
                if (slots != NULL && e->slot >= 0) {
                    Py_XSETREF(slots[e->slot], v);  /* a repeated attribute: the last wins */
                } else {
                    int rc = PyDict_SetItem(out, e->name, v);
                    Py_DECREF(v);
                    if (rc < 0) return -1;
                }
            } else if (PyErr_Occurred()) {
                return -1;
            }
            if (e->sub != NULL
                && tlv_walk(w, bufobj, buf, buflen, p4, nxt, e->sub, out, slots) < 0)
                return -1;
        }
        pos += (alen + 3) & ~3u;
    }
    return 0;
}

/* The arguments of a walk (buf: bytes, start: int, end: int, out: dict), read straight
   from the tuple: PyArg_ParseTuple's format parsing cost some 400 instructions a call,
   and a walk runs for every event. */
static int walk_args(PyObject *args, PyObject *kw, const char *usage, PyObject **buf,
                     Py_ssize_t *start, Py_ssize_t *end, PyObject **out)
{
    if ((kw != NULL && PyDict_GET_SIZE(kw)) || PyTuple_GET_SIZE(args) != 4
        || !PyBytes_Check(PyTuple_GET_ITEM(args, 0)) || !PyDict_Check(PyTuple_GET_ITEM(args, 3))) {
        PyErr_Format(PyExc_TypeError, "%s: takes (bytes, int, int, dict), no keywords", usage);
        return -1;
    }
    *start = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, 1));
    if (*start == -1 && PyErr_Occurred()) return -1;
    *end = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, 2));
    if (*end == -1 && PyErr_Occurred()) return -1;
    *buf = PyTuple_GET_ITEM(args, 0);
    *out = PyTuple_GET_ITEM(args, 3);
    return 0;
}

#define MAX_EXTRAS 16

/* tlv_walk over buf[start:end] (see there for `slots`), the range checked first. */
static int walk_into(Walker *self, PyObject *buf, Py_ssize_t start, Py_ssize_t end,
                     PyObject *out, PyObject **slots)
{
    Py_ssize_t size = PyBytes_GET_SIZE(buf);
    if (start < 0 || end > size) {
        PyErr_SetString(PyExc_ValueError, "walk: range outside buffer");
        return -1;
    }
    return tlv_walk(self, buf, (const unsigned char *)PyBytes_AS_STRING(buf), size, start, end,
                    self->root, out, slots);
}

/* Walk into `out` (the extras into slots, not into `out`), apply the rules, and return
   the extras in order, their defaults where absent.  The same result as the pure twin's
   walk-then-pop: the extras' names are never record keys (Walker_init makes sure no rule
   reads or drops one).  Split(), and CtDecode without building a call's arguments. */
static PyObject *split_into(Walker *self, PyObject *buf, Py_ssize_t start, Py_ssize_t end,
                            PyObject *out)
{
    PyObject *slots[MAX_EXTRAS] = {NULL};
    PyObject *got = NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(self->extras);
    if (walk_into(self, buf, start, end, out, slots) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(self->rules); i++) {
        PyObject *rule = PyTuple_GET_ITEM(self->rules, i);
        PyObject *v = PyDict_GetItemWithError(out, PyTuple_GET_ITEM(rule, 0));
        int ok = 0;
        if (v == NULL && PyErr_Occurred()) goto done;
        if (v != NULL && (ok = PySet_Contains(PyTuple_GET_ITEM(rule, 1), v)) < 0) goto done;
        if (ok) continue;
        PyObject *drop = PyTuple_GET_ITEM(rule, 2);
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(drop); k++) {
            PyObject *name = PyTuple_GET_ITEM(drop, k);
            int has = PyDict_Contains(out, name);
            if (has < 0 || (has && PyDict_DelItem(out, name) < 0)) goto done;
        }
    }
    got = PyTuple_New(n);
    if (got == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = slots[i];
        if (v == NULL) {
            v = PyTuple_GET_ITEM(PyTuple_GET_ITEM(self->extras, i), 1);
            Py_INCREF(v);
        }
        slots[i] = NULL;
        PyTuple_SET_ITEM(got, i, v);
    }
done:
    for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(slots[i]);
    return got;
}

static PyObject *Walker_call(Walker *self, PyObject *args, PyObject *kw)
{
    PyObject *buf, *out;
    Py_ssize_t start, end;
    if (walk_args(args, kw, "walk(buf, start, end, out)", &buf, &start, &end, &out) < 0
        || walk_into(self, buf, start, end, out, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* split(buf, start, end, out) -> the extras: see split_into. */
static PyObject *Walker_split(Walker *self, PyObject *args)
{
    PyObject *buf, *out;
    Py_ssize_t start, end;
    if (walk_args(args, NULL, "split(buf, start, end, out)", &buf, &start, &end, &out) < 0)
        return NULL;
    return split_into(self, buf, start, end, out);
}

static int check_finish(PyObject *extras, PyObject *rules)
{
    if (PyTuple_GET_SIZE(extras) > MAX_EXTRAS) {
        PyErr_Format(PyExc_ValueError, "at most %d extras", MAX_EXTRAS);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(extras); i++) {
        PyObject *e = PyTuple_GET_ITEM(extras, i);
        if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(e, 0)))
            goto bad;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(rules); i++) {
        PyObject *r = PyTuple_GET_ITEM(rules, i), *drop;
        if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 3 || !PyUnicode_Check(PyTuple_GET_ITEM(r, 0))
            || !PyAnySet_Check(PyTuple_GET_ITEM(r, 1)) || !PyTuple_Check(drop = PyTuple_GET_ITEM(r, 2)))
            goto bad;
        if (extra_slot(extras, PyTuple_GET_ITEM(r, 0)) >= 0) goto bad;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(drop); k++)
            if (!PyUnicode_Check(PyTuple_GET_ITEM(drop, k))
                || extra_slot(extras, PyTuple_GET_ITEM(drop, k)) >= 0) goto bad;
    }
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError, "extras: ((name, default), ...); "
                    "rules: ((key, frozenset, (name, ...)), ...), no rule on an extra");
    return -1;
}

static int Walker_init(Walker *self, PyObject *args, PyObject *kw)
{
    PyObject *table, *malformed, *extras = NULL, *rules = NULL;
    static char *names[] = {"table", "malformed", "extras", "rules", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O!O!", names, &table, &malformed,
                                     &PyTuple_Type, &extras, &PyTuple_Type, &rules))
        return -1;
    PyObject *empty = PyTuple_New(0);
    if (empty == NULL) return -1;
    extras = extras ? extras : empty;
    rules = rules ? rules : empty;
    if (check_finish(extras, rules) < 0) { Py_DECREF(empty); return -1; }
    Py_INCREF(extras);
    Py_XSETREF(self->extras, extras);
    Py_INCREF(rules);
    Py_XSETREF(self->rules, rules);
    Py_DECREF(empty);
    tlv_table *root = tlv_build(table, extras, 0);
    if (root == NULL) return -1;
    tlv_free(self->root);
    self->root = root;
    Py_INCREF(malformed);
    Py_XSETREF(self->malformed, malformed);
    return 0;
}

static void Walker_dealloc(Walker *self)
{
    tlv_free(self->root);
    Py_XDECREF(self->malformed);
    Py_XDECREF(self->extras);
    Py_XDECREF(self->rules);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Walker_methods[] = {
    {"split", (PyCFunction)Walker_split, METH_VARARGS,
     PyDoc_STR("split(buf, start, end, out) -> the extras: walk, take them out, apply rules")},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WalkerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ulogpy._fastpath.Walker",
    .tp_doc = PyDoc_STR("Walker(table, malformed, extras=(), rules=()): attrs.Splitter in C."),
    .tp_basicsize = sizeof(Walker),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Walker_init,
    .tp_dealloc = (destructor)Walker_dealloc,
    .tp_call = (ternaryfunc)Walker_call,
    .tp_methods = Walker_methods,
};

/* ------------------------------------------- conntrack messages (CtDecode) */

#include <structmember.h>

/* CtDecode(walker, kinds, template, family_key, cls, names, zone_at, fallback, malformed)
   (buf, offset=0, length=None) -> a `cls` instance | None: conntrack.CtDecoder's decode
   in one call, for a `bytes` buffer (anything else goes to `fallback`, the pure decode).
   Why: with the walker compiled, the Python around it (the framing checks, the copy of
   the template, unpacking the walker's extras, the 14-argument __init__ of the event)
   cost a quarter of the decode.  The same tables drive it: `kinds` is conntrack's
   message-type table (type -> (flags mask, event if a flag is set, event otherwise)),
   the walk is `walker`'s split_into; `names` are the `cls` slots set, in the order
   event, msg_type, flags, family, values, tuple_key, then the walker's extras after
   the two tuples; `zone_at` is the zone's place among those extras (appended to the
   tuple key when non-zero, two bytes big-endian, as conntrack._ZONE packs it). */

#define CT_FIELDS_MAX 24

typedef struct {
    PyObject_HEAD
    Walker *walker;
    PyObject *kinds, *template, *family_key, *cls, *fallback, *malformed;
    Py_ssize_t nfields, zone_at;
    Py_ssize_t offsets[CT_FIELDS_MAX];
} CtDecode;

static int CtDecode_init(CtDecode *self, PyObject *args, PyObject *kw)
{
    PyObject *walker, *kinds, *template, *family_key, *cls, *names, *fallback, *malformed;
    Py_ssize_t zone_at;
    static char *kwnames[] = {"walker", "kinds", "template", "family_key", "cls", "names",
                              "zone_at", "fallback", "malformed", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!O!O!UO!O!nOO", kwnames, &WalkerType, &walker,
                                     &PyDict_Type, &kinds, &PyDict_Type, &template, &family_key,
                                     &PyType_Type, &cls, &PyTuple_Type, &names, &zone_at,
                                     &fallback, &malformed))
        return -1;
    PyObject *key, *value;
    Py_ssize_t it = 0;
    while (PyDict_Next(kinds, &it, &key, &value)) {
        if (!PyLong_CheckExact(key) || !PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 3
            || !PyLong_CheckExact(PyTuple_GET_ITEM(value, 0))) {
            PyErr_SetString(PyExc_ValueError,
                            "CtDecode: kinds is {type: (flags mask, event, event)}");
            return -1;
        }
    }
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    Py_ssize_t nextras = PyTuple_GET_SIZE(((Walker *)walker)->extras);
    if (n > CT_FIELDS_MAX || n != 6 + nextras - 2 || nextras < 2 || zone_at < 2
        || zone_at >= nextras) {
        PyErr_SetString(PyExc_ValueError, "CtDecode: names are event, msg_type, flags, family, "
                        "values, tuple_key and one per extra after the two tuples");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyObject_GetAttr(cls, PyTuple_GET_ITEM(names, i));
        if (d == NULL) return -1;
        int ok = Py_IS_TYPE(d, &PyMemberDescr_Type)
                 && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok) self->offsets[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!ok) {
            PyErr_Format(PyExc_ValueError, "CtDecode: %R is not a slot of the event class",
                         PyTuple_GET_ITEM(names, i));
            return -1;
        }
    }
    PyObject *slots = PyObject_GetAttrString(cls, "__slots__");
    if (slots == NULL) return -1;
    Py_ssize_t nslots = PyObject_Length(slots);
    Py_DECREF(slots);
    if (nslots != n) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "CtDecode: names must set every slot");
        return -1;
    }
    self->nfields = n;
    self->zone_at = zone_at;
    Py_INCREF(walker); Py_XSETREF(self->walker, (Walker *)walker);
    Py_INCREF(kinds); Py_XSETREF(self->kinds, kinds);
    Py_INCREF(template); Py_XSETREF(self->template, template);
    Py_INCREF(family_key); PyUnicode_InternInPlace(&family_key);
    Py_XSETREF(self->family_key, family_key);
    Py_INCREF(cls); Py_XSETREF(self->cls, cls);
    Py_INCREF(fallback); Py_XSETREF(self->fallback, fallback);
    Py_INCREF(malformed); Py_XSETREF(self->malformed, malformed);
    return 0;
}

static PyObject *ct_malformed(CtDecode *self, const char *msg)
{
    PyErr_SetString(self->malformed, msg);
    return NULL;
}

static PyObject *CtDecode_call(CtDecode *self, PyObject *args, PyObject *kw)
{
    Py_ssize_t nargs = PyTuple_GET_SIZE(args), offset = 0, length;
    PyObject *buf = nargs ? PyTuple_GET_ITEM(args, 0) : NULL;
    PyObject *loff = nargs > 1 ? PyTuple_GET_ITEM(args, 1) : NULL;
    PyObject *llen = nargs > 2 ? PyTuple_GET_ITEM(args, 2) : Py_None;
    if ((kw != NULL && PyDict_GET_SIZE(kw)) || nargs < 1 || nargs > 3 || !PyBytes_CheckExact(buf)
        || (loff != NULL && !PyLong_CheckExact(loff)) || (llen != Py_None && !PyLong_CheckExact(llen)))
        return PyObject_Call(self->fallback, args, kw);  /* the pure way says what is wrong */
    Py_ssize_t size = PyBytes_GET_SIZE(buf);
    if (loff != NULL && (offset = PyLong_AsSsize_t(loff)) == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return PyObject_Call(self->fallback, args, kw);
    }
    if (llen == Py_None) {
        length = size - offset;
    } else if ((length = PyLong_AsSsize_t(llen)) == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return PyObject_Call(self->fallback, args, kw);
    }
    /* attrs.message_length, then CtDecoder.decode's framing checks */
    if (offset < 0 || length < 0 || offset > size || length > size - offset)
        return ct_malformed(self, "range outside buffer");
    if (length < 20) return ct_malformed(self, "message shorter than nlmsghdr + nfgenmsg");
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(buf) + offset;
    uint32_t mlen;
    memcpy(&mlen, p, 4);
    unsigned mtype = rd16h(p + 4), mflags = rd16h(p + 6);
    if (mlen < 20 || mlen > (uint64_t)length) {
        PyErr_Format(self->malformed, "bad nlmsg_len %u", (unsigned)mlen);
        return NULL;
    }
    PyObject *type = PyLong_FromLong((long)mtype);
    if (type == NULL) return NULL;
    PyObject *kind = PyDict_GetItemWithError(self->kinds, type);
    Py_DECREF(type);
    if (kind == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    long mask = PyLong_AsLong(PyTuple_GET_ITEM(kind, 0));
    PyObject *event = PyTuple_GET_ITEM(kind, (mflags & mask) ? 1 : 2);
    PyObject *values = PyDict_Copy(self->template), *got = NULL, *fields[CT_FIELDS_MAX] = {NULL};
    PyObject *family = values ? PyLong_FromLong(p[16]) : NULL;
    PyObject *result = NULL;
    if (family == NULL || PyDict_SetItem(values, self->family_key, family) < 0) goto done;
    got = split_into(self->walker, buf, offset + 20, offset + (Py_ssize_t)mlen, values);
    if (got == NULL) goto done;
    PyObject *orig = PyTuple_GET_ITEM(got, 0), *reply = PyTuple_GET_ITEM(got, 1);
    PyObject *zone = PyTuple_GET_ITEM(got, self->zone_at);
    if (!PyBytes_Check(orig) || !PyBytes_Check(reply) || !PyLong_Check(zone)) {
        PyErr_SetString(PyExc_TypeError, "CtDecode: the tuples are bytes, the zone an int");
        goto done;
    }
    long z = PyLong_AsLong(zone);
    if (z == -1 && PyErr_Occurred()) goto done;
    Py_ssize_t no = PyBytes_GET_SIZE(orig), nr = PyBytes_GET_SIZE(reply);
    PyObject *key = PyBytes_FromStringAndSize(NULL, no + nr + (z ? 2 : 0));
    if (key == NULL) goto done;
    char *k = PyBytes_AS_STRING(key);
    memcpy(k, PyBytes_AS_STRING(orig), no);
    memcpy(k + no, PyBytes_AS_STRING(reply), nr);
    if (z) { k[no + nr] = (char)((z >> 8) & 0xFF); k[no + nr + 1] = (char)(z & 0xFF); }
    fields[0] = Py_NewRef(event);
    fields[1] = PyLong_FromLong((long)(mtype & 0xFF));
    fields[2] = PyLong_FromLong((long)mflags);
    fields[3] = Py_NewRef(family);
    fields[4] = Py_NewRef(values);
    fields[5] = key;
    for (Py_ssize_t i = 2; i < PyTuple_GET_SIZE(got); i++)
        fields[4 + i] = Py_NewRef(PyTuple_GET_ITEM(got, i));
    if (fields[1] == NULL || fields[2] == NULL) goto done;
    PyTypeObject *cls = (PyTypeObject *)self->cls;
    result = cls->tp_alloc(cls, 0);
    if (result == NULL) goto done;
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        *(PyObject **)((char *)result + self->offsets[i]) = fields[i];  /* the reference moves */
        fields[i] = NULL;
    }
done:
    for (Py_ssize_t i = 0; i < self->nfields; i++) Py_XDECREF(fields[i]);
    Py_XDECREF(got);
    Py_XDECREF(family);
    Py_XDECREF(values);
    return result;
}

/* The fallback is the decoder's bound method, and the decoder holds this object. */
static int CtDecode_traverse(CtDecode *self, visitproc visit, void *arg)
{
    Py_VISIT(self->walker);
    Py_VISIT(self->kinds);
    Py_VISIT(self->template);
    Py_VISIT(self->cls);
    Py_VISIT(self->fallback);
    Py_VISIT(self->malformed);
    return 0;
}

static int CtDecode_clear(CtDecode *self)
{
    Py_CLEAR(self->walker);
    Py_CLEAR(self->kinds);
    Py_CLEAR(self->template);
    Py_CLEAR(self->family_key);
    Py_CLEAR(self->cls);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->malformed);
    return 0;
}

static void CtDecode_dealloc(CtDecode *self)
{
    PyObject_GC_UnTrack(self);
    CtDecode_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject CtDecodeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ulogpy._fastpath.CtDecode",
    .tp_doc = PyDoc_STR("CtDecode(walker, kinds, template, family_key, cls, names, zone_at, "
                        "fallback, malformed)(buf, offset=0, length=None) -> event | None"),
    .tp_basicsize = sizeof(CtDecode),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)CtDecode_traverse,
    .tp_clear = (inquiry)CtDecode_clear,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)CtDecode_init,
    .tp_dealloc = (destructor)CtDecode_dealloc,
    .tp_call = (ternaryfunc)CtDecode_call,
};

/* ------------------------------------------- flat walker (nflog PACKET_ATTRS) */

/* Kinds of ulogpy.netlink.nflog's entries. */
enum { F_ONE = 0, F_TWO = 1, F_DATA = 2, F_TEXT = 3, F_HWADDR = 4 };

typedef struct {
    int kind;               /* -1: no entry */
    int size;               /* minimum payload */
    PyObject *names[2];     /* owned; names[1] may be NULL */
    int off[2], len[2];     /* ONE / TWO: where each big-endian number is */
} flat_entry;

typedef struct {
    PyObject_HEAD
    int count;
    flat_entry *entries;
} FlatWalker;

static void FlatWalker_clear(FlatWalker *self)
{
    for (int i = 0; i < self->count; i++) {
        Py_XDECREF(self->entries[i].names[0]);
        Py_XDECREF(self->entries[i].names[1]);
    }
    PyMem_Free(self->entries);
    self->entries = NULL;
    self->count = 0;
}

/* The fields of a big-endian struct format of numbers and pad bytes ("HBx", "QQ"). */
static int flat_fields(const char *fmt, flat_entry *e, int want)
{
    int at = 0, n = 0;
    for (; *fmt; fmt++) {
        int size;
        switch (*fmt) {
        case 'x': at += 1; continue;
        case 'B': size = 1; break;
        case 'H': size = 2; break;
        case 'I': size = 4; break;
        case 'Q': size = 8; break;
        default: return -1;
        }
        if (n >= 2) return -1;  /* (big-endian struct formats have no alignment) */
        e->off[n] = at;
        e->len[n] = size;
        n++;
        at += size;
    }
    return n == want && at == e->size ? 0 : -1;
}

static int FlatWalker_init(FlatWalker *self, PyObject *args, PyObject *kw)
{
    PyObject *table, *key, *value;
    static char *kwnames[] = {"table", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!", kwnames, &PyDict_Type, &table)) return -1;
    FlatWalker_clear(self);
    long top = -1;
    Py_ssize_t it = 0;
    while (PyDict_Next(table, &it, &key, &value)) {
        long t = PyLong_AsLong(key);
        if (t == -1 && PyErr_Occurred()) return -1;
        if (t < 0 || t > 0x3FFF) {
            PyErr_SetString(PyExc_ValueError, "attribute type outside 0..0x3fff");
            return -1;
        }
        if (t > top) top = t;
    }
    self->entries = PyMem_Calloc(top + 2, sizeof(flat_entry));
    if (self->entries == NULL) { PyErr_NoMemory(); return -1; }
    self->count = (int)top + 1;
    for (int i = 0; i < self->count; i++) self->entries[i].kind = -1;
    it = 0;
    while (PyDict_Next(table, &it, &key, &value)) {
        flat_entry *e = &self->entries[PyLong_AsLong(key)];
        PyObject *names, *fmt;
        if (!PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 5) goto bad;
        e->kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(value, 0));
        names = PyTuple_GET_ITEM(value, 1);
        e->size = (int)PyLong_AsLong(PyTuple_GET_ITEM(value, 3));
        fmt = PyTuple_GET_ITEM(value, 4);
        if (PyErr_Occurred() || !PyTuple_Check(names) || PyTuple_GET_SIZE(names) < 1
            || PyTuple_GET_SIZE(names) > 2 || !PyUnicode_Check(fmt))
            goto bad;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(names); k++) {
            PyObject *name = PyTuple_GET_ITEM(names, k);
            if (!PyUnicode_Check(name)) goto bad;
            if (PyUnicode_GET_LENGTH(name) == 0) continue;  /* DATA without a length key */
            Py_INCREF(name);
            PyUnicode_InternInPlace(&name);
            e->names[k] = name;
        }
        if (e->names[0] == NULL) goto bad;
        const char *f = PyUnicode_AsUTF8(fmt);
        switch (e->kind) {
        case F_ONE: if (flat_fields(f, e, 1) < 0) goto bad; break;
        case F_TWO: if (e->names[1] == NULL || flat_fields(f, e, 2) < 0) goto bad; break;
        case F_DATA: case F_TEXT: break;
        case F_HWADDR:
            if (strcmp(f, "H2x8s") != 0 || e->size != 12 || e->names[1] == NULL) goto bad;
            break;
        default: goto bad;
        }
    }
    return 0;
bad:
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "packet attribute entry the compiled walker cannot take");
    FlatWalker_clear(self);
    return -1;
}

static int flat_set(PyObject *out, PyObject *name, PyObject *v)
{
    if (v == NULL) return -1;
    int rc = PyDict_SetItem(out, name, v);
    Py_DECREF(v);
    return rc;
}

/* walk(buf, pos, end, out) -> the damage (str) or None: nflog._walk in C. */
static PyObject *FlatWalker_call(FlatWalker *self, PyObject *args, PyObject *kw)
{
    PyObject *bufobj, *out, *damage = NULL;
    Py_ssize_t pos, end;
    if (walk_args(args, kw, "walk(buf, pos, end, out)", &bufobj, &pos, &end, &out) < 0)
        return NULL;
    if (pos < 0 || end > PyBytes_GET_SIZE(bufobj)) {
        PyErr_SetString(PyExc_ValueError, "walk: range outside buffer");
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(bufobj);
    while (pos < end) {
        if (end - pos < 4) {
            Py_XDECREF(damage);
            return PyUnicode_FromFormat("attribute header truncated (%zd bytes left)", end - pos);
        }
        unsigned alen = rd16h(buf + pos), atype = rd16h(buf + pos + 2) & 0x3FFF;
        Py_ssize_t nxt = pos + alen, p = pos + 4, plen = (Py_ssize_t)alen - 4;
        if (alen < 4 || nxt > end) {
            Py_XDECREF(damage);
            return PyUnicode_FromFormat("bad attribute length %u (%zd bytes left)", alen,
                                        end - pos);
        }
        if ((int)atype < self->count && self->entries[atype].kind >= 0) {
            const flat_entry *e = &self->entries[atype];
            int rc = 0;
            if (plen < e->size) {
                Py_XSETREF(damage, PyUnicode_FromFormat("attribute %U too short (%zd bytes)",
                                                        e->names[0], plen));
                if (damage == NULL) return NULL;
            } else {
                switch (e->kind) {
                case F_ONE:
                    rc = flat_set(out, e->names[0], number(buf + p + e->off[0], e->len[0], 1));
                    break;
                case F_TWO:
                    rc = flat_set(out, e->names[0], number(buf + p + e->off[0], e->len[0], 1));
                    if (rc == 0)
                        rc = flat_set(out, e->names[1],
                                      number(buf + p + e->off[1], e->len[1], 1));
                    break;
                case F_DATA:
                    rc = flat_set(out, e->names[0],
                                  PyBytes_FromStringAndSize((const char *)buf + p, plen));
                    if (rc == 0 && e->names[1] != NULL)
                        rc = flat_set(out, e->names[1], PyLong_FromSsize_t(plen));
                    break;
                case F_TEXT: {
                    const unsigned char *nul = memchr(buf + p, 0, plen);
                    Py_ssize_t n = nul ? (Py_ssize_t)(nul - (buf + p)) : plen;
                    rc = flat_set(out, e->names[0],
                                  PyUnicode_DecodeUTF8((const char *)buf + p, n,
                                                       "surrogateescape"));
                    break;
                }
                default: {  /* F_HWADDR: be16 length, 2 pad bytes, 8 address bytes */
                    unsigned addrlen = (unsigned)rd_be(buf + p, 2);
                    rc = flat_set(out, e->names[0],
                                  PyBytes_FromStringAndSize((const char *)buf + p + 4,
                                                            addrlen < 8 ? addrlen : 8));
                    if (rc == 0) rc = flat_set(out, e->names[1], PyLong_FromLong(addrlen));
                }
                }
            }
            if (rc < 0) { Py_XDECREF(damage); return NULL; }
        }
        pos = nxt + ((4 - (alen & 3)) & 3);
    }
    if (damage == NULL) Py_RETURN_NONE;
    return damage;
}

static void FlatWalker_dealloc(FlatWalker *self)
{
    FlatWalker_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject FlatWalkerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ulogpy._fastpath.FlatWalker",
    .tp_doc = PyDoc_STR("FlatWalker(PACKET_ATTRS)(buf, pos, end, out) -> damage: nflog's walk."),
    .tp_basicsize = sizeof(FlatWalker),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FlatWalker_init,
    .tp_dealloc = (destructor)FlatWalker_dealloc,
    .tp_call = (ternaryfunc)FlatWalker_call,
};

/* ------------------------------------------------------------- JSON lines */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
    int wide;          /* JsonLine: 1 once a byte past ASCII may be in (see ob_str) */
    char local[2048];
} outbuf;

static int ob_grow_slow(outbuf *b, Py_ssize_t more)
{
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + more) cap *= 2;
    char *p = b->data == b->local ? PyMem_Malloc(cap) : PyMem_Realloc(b->data, cap);
    if (p == NULL) { PyErr_NoMemory(); return -1; }
    if (b->data == b->local) memcpy(p, b->local, b->len);
    b->data = p;
    b->cap = cap;
    return 0;
}

/* Room for `more` bytes: the check inline, the growing out of line. */
static inline int ob_grow(outbuf *b, Py_ssize_t more)
{
    return b->len + more <= b->cap ? 0 : ob_grow_slow(b, more);
}

static inline int ob_put(outbuf *b, const char *s, Py_ssize_t n)
{
    if (ob_grow(b, n) < 0) return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

static const char HEX[] = "0123456789ABCDEF";

/* The str of what `b` holds.  Why not always PyUnicode_DecodeUTF8: a line known to be
   ASCII needs no decoding (checking a 1 KiB NFLOG line byte by byte cost some 900
   instructions); it is copied into a new str as it is. */
static PyObject *ob_str(const outbuf *b)
{
    if (b->wide) return PyUnicode_DecodeUTF8(b->data, b->len, NULL);
    PyObject *text = PyUnicode_New(b->len, 127);
    if (text != NULL) memcpy(PyUnicode_1BYTE_DATA(text), b->data, b->len);
    return text;
}

static int is_ascii(PyObject *bytes)
{
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(bytes);
    for (Py_ssize_t i = 0; i < PyBytes_GET_SIZE(bytes); i++)
        if (p[i] & 0x80) return 0;
    return 1;
}

/* `text` (UTF-8) quoted the way jsontext.json_string quotes it. */
static int ob_json_string(outbuf *b, const char *s, Py_ssize_t n)
{
    /* Room for the worst case at once (every byte a \\u00XX), then no check per byte. */
    if (n > (PY_SSIZE_T_MAX - 2) / 6) { PyErr_NoMemory(); return -1; }
    if (ob_grow(b, 6 * n + 2) < 0) return -1;
    b->data[b->len++] = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            b->data[b->len++] = (char)c;
            continue;
        }
        char esc[6];
        int k = 2;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u'; esc[2] = '0'; esc[3] = '0'; esc[4] = HEX[c >> 4]; esc[5] = HEX[c & 15];
            k = 6;
        }
        memcpy(b->data + b->len, esc, k);
        b->len += k;
    }
    b->data[b->len++] = '"';
    return 0;
}

#define LAYOUT_MAX 128

typedef struct {
    PyObject *sep_prefix;  /* bytes: ", " + "\"name\": " */
    int is_string;
    Py_ssize_t nkeys;      /* record keys, first one first; the last valid one wins */
    PyObject **keys;
} json_field;

typedef struct {
    PyObject_HEAD
    PyObject *lead;       /* bytes before the time stamp */
    PyObject *after;      /* bytes after it (", \"dvc\": ...") */
    int with_ts;
    Py_ssize_t nfields;
    json_field *fields;
    PyObject *index;      /* record key -> field number * 256 + rank among its keys */
    int by_record;        /* every key in one field only: walk the record, not the fields */
    int fixed_wide;       /* lead, after or a field's prefix holds more than ASCII */
    /* The `index` entries of the keys of the records seen, by position in the record:
       records of one kind hold the same key objects (the decoder's and the plugins'
       own strs) in the same order, so one pointer comparison finds an item's field,
       where a look-up hashes and compares.  Each entry keeps its key alive, so an
       equal pointer is the same key.  -1: a key of no field. */
    Py_ssize_t layout_n;
    PyObject *layout_keys[LAYOUT_MAX];
    Py_ssize_t layout_where[LAYOUT_MAX];
} JsonLine;

static void JsonLine_clear_fields(JsonLine *self)
{
    for (Py_ssize_t i = 0; i < self->nfields; i++) {
        json_field *f = &self->fields[i];
        Py_XDECREF(f->sep_prefix);
        for (Py_ssize_t k = 0; k < f->nkeys; k++) Py_XDECREF(f->keys[k]);
        PyMem_Free(f->keys);
    }
    PyMem_Free(self->fields);
    self->fields = NULL;
    self->nfields = 0;
    Py_CLEAR(self->index);
    for (Py_ssize_t i = 0; i < self->layout_n; i++) Py_CLEAR(self->layout_keys[i]);
    self->layout_n = 0;
}

static int JsonLine_init(JsonLine *self, PyObject *args, PyObject *kw)
{
    PyObject *lead, *after, *fields;
    int with_ts;
    static char *names[] = {"lead", "after", "with_ts", "fields", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!O!pO!", names, &PyBytes_Type, &lead,
                                     &PyBytes_Type, &after, &with_ts, &PyTuple_Type, &fields))
        return -1;
    JsonLine_clear_fields(self);
    Py_INCREF(lead);
    Py_XSETREF(self->lead, lead);
    Py_INCREF(after);
    Py_XSETREF(self->after, after);
    self->with_ts = with_ts;
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    self->fields = PyMem_Calloc(n ? n : 1, sizeof(json_field));
    if (self->fields == NULL) { PyErr_NoMemory(); return -1; }
    self->nfields = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(fields, i), *keys;
        json_field *f = &self->fields[i];
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3
            || !PyBytes_Check(PyTuple_GET_ITEM(item, 0))
            || !PyTuple_Check(keys = PyTuple_GET_ITEM(item, 2)) || PyTuple_GET_SIZE(keys) < 1) {
            PyErr_SetString(PyExc_ValueError,
                            "JSON field: (bytes prefix, is a string, (record key, ...))");
            return -1;
        }
        f->sep_prefix = Py_NewRef(PyTuple_GET_ITEM(item, 0));
        f->is_string = PyObject_IsTrue(PyTuple_GET_ITEM(item, 1));
        f->nkeys = PyTuple_GET_SIZE(keys);
        f->keys = PyMem_Calloc(f->nkeys, sizeof(PyObject *));
        if (f->keys == NULL) { PyErr_NoMemory(); return -1; }
        if (f->nkeys > 255) {
            PyErr_SetString(PyExc_ValueError, "JSON field: at most 255 record keys");
            return -1;
        }
        for (Py_ssize_t k = 0; k < f->nkeys; k++) {
            PyObject *key = PyTuple_GET_ITEM(keys, k);
            if (!PyUnicode_Check(key)) {
                PyErr_SetString(PyExc_ValueError, "JSON field: record keys are str");
                return -1;
            }
            Py_INCREF(key);
            PyUnicode_InternInPlace(&key);
            f->keys[k] = key;
        }
    }
    /* Where each key goes.  A key that two fields list (or one field twice) needs the
       look-ups field by field: `by_record` is off then. */
    self->index = PyDict_New();
    if (self->index == NULL) return -1;
    for (Py_ssize_t i = n - 1; i >= 0; i--) {
        json_field *f = &self->fields[i];
        for (Py_ssize_t k = 0; k < f->nkeys; k++) {
            PyObject *where = PyLong_FromSsize_t(i * 256 + k);
            if (where == NULL || PyDict_SetItem(self->index, f->keys[k], where) < 0) {
                Py_XDECREF(where);
                return -1;
            }
            Py_DECREF(where);
        }
    }
    self->fixed_wide = !is_ascii(lead) || !is_ascii(after);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!is_ascii(self->fields[i].sep_prefix)) self->fixed_wide = 1;
    self->by_record = 1;
    for (Py_ssize_t i = 0; i < n; i++)
        for (Py_ssize_t k = 0; k < self->fields[i].nkeys; k++)
            for (Py_ssize_t j = 0; j < n; j++)
                for (Py_ssize_t l = 0; l < self->fields[j].nkeys; l++)
                    if ((j != i || l != k) && self->fields[j].keys[l] == self->fields[i].keys[k])
                        self->by_record = 0;
    return 0;
}

/* Append the text of a value: as str(value) is, or with `formatted` as an f-string shows
   it (format(value, ""): the same for ints and strs, not for every type); 1: not handled
   here (text that is not valid UTF-8). */
static int put_text(outbuf *b, PyObject *value, int formatted)
{
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow && !(v == -1 && PyErr_Occurred())) {
            char tmp[24], *end = tmp + sizeof tmp, *p = end;
            unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
            do { *--p = (char)('0' + u % 10); u /= 10; } while (u);
            if (v < 0) *--p = '-';
            return ob_put(b, p, end - p);
        }
        PyErr_Clear();
    }
    PyObject *text = PyUnicode_CheckExact(value) ? Py_NewRef(value)
                     : formatted ? PyObject_Format(value, NULL) : PyObject_Str(value);
    if (text == NULL) return -1;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (s == NULL) { Py_DECREF(text); PyErr_Clear(); return 1; }
    if (!PyUnicode_IS_ASCII(text)) b->wide = 1;
    int rc = ob_put(b, s, n);
    Py_DECREF(text);
    return rc;
}

static PyObject *JsonLine_call(JsonLine *self, PyObject *args, PyObject *kw)
{
    if ((kw != NULL && PyDict_GET_SIZE(kw)) || PyTuple_GET_SIZE(args) != 2
        || !PyDict_Check(PyTuple_GET_ITEM(args, 0))
        || !PyUnicode_Check(PyTuple_GET_ITEM(args, 1))) {  /* (no PyArg_ParseTuple: see walk_args) */
        PyErr_SetString(PyExc_TypeError, "render(record, ts): takes (dict, str), no keywords");
        return NULL;
    }
    PyObject *record = PyTuple_GET_ITEM(args, 0), *ts = PyTuple_GET_ITEM(args, 1);
    outbuf b;
    b.data = b.local;
    b.len = 0;
    b.cap = sizeof b.local;
    b.wide = self->fixed_wide;
    PyObject *result = NULL;
    int rc = ob_put(&b, PyBytes_AS_STRING(self->lead), PyBytes_GET_SIZE(self->lead));
    if (rc == 0 && self->with_ts) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(ts, &n);
        if (s == NULL) { PyErr_Clear(); rc = 1; }
        else rc = ob_put(&b, s, n);
        if (!PyUnicode_IS_ASCII(ts)) b.wide = 1;
    }
    if (rc == 0) rc = ob_put(&b, PyBytes_AS_STRING(self->after), PyBytes_GET_SIZE(self->after));
    /* Each field's value: the last valid of its keys.  Walking the record's items and
       finding their fields costs one look-up per item (a stack gives many more fields
       than a record holds keys); else one look-up per key of every field.  `hit` marks
       the fields given a value, so that only those are visited after (an NFLOG stack
       has 80 fields, a packet's record fills some 35). */
    PyObject *local_values[128], **values = local_values;
    int local_ranks[128], *ranks = local_ranks;
    uint64_t local_hit[2], *hit = local_hit;
    Py_ssize_t words = (self->nfields + 63) / 64;
    if (rc == 0 && self->nfields > 128) {
        values = PyMem_Calloc(self->nfields, sizeof(PyObject *));
        ranks = PyMem_Calloc(self->nfields, sizeof(int));
        hit = PyMem_Calloc(words, sizeof(uint64_t));
        if (values == NULL || ranks == NULL || hit == NULL) { PyErr_NoMemory(); rc = -1; }
    }
    if (rc == 0) memset(hit, 0, words * sizeof(uint64_t));
    if (rc == 0 && self->by_record && PyDict_CheckExact(record)) {
        Py_ssize_t it = 0, pos = 0;
        PyObject *key, *v;
        while (PyDict_Next(record, &it, &key, &v)) {
            Py_ssize_t w = -1;
            if (pos < self->layout_n && self->layout_keys[pos] == key) {
                w = self->layout_where[pos];
            } else {
                if (PyUnicode_CheckExact(key)) {
                    PyObject *where = PyDict_GetItemWithError(self->index, key);
                    if (where != NULL) w = PyLong_AsSsize_t(where);
                    else if (PyErr_Occurred()) { rc = -1; break; }
                }
                if (pos < LAYOUT_MAX) {
                    Py_INCREF(key);
                    Py_XSETREF(self->layout_keys[pos], key);
                    self->layout_where[pos] = w;
                    if (pos >= self->layout_n) self->layout_n = pos + 1;
                }
            }
            pos++;
            if (w < 0 || v == Py_None) continue;
            Py_ssize_t f = w >> 8;
            int r = (int)(w & 255);
            uint64_t bit = (uint64_t)1 << (f & 63);
            if (!(hit[f >> 6] & bit) || r > ranks[f]) {  /* the first of its keys, or a later one */
                hit[f >> 6] |= bit;
                values[f] = v;
                ranks[f] = r;
            }
        }
    } else if (rc == 0) {
        for (Py_ssize_t i = 0; i < self->nfields; i++) {
            const json_field *f = &self->fields[i];
            for (Py_ssize_t k = 0; k < f->nkeys; k++) {
                PyObject *v = PyDict_GetItemWithError(record, f->keys[k]);
                if (v == NULL && PyErr_Occurred()) { rc = -1; break; }
                if (v != NULL && v != Py_None) {
                    values[i] = v;
                    hit[i >> 6] |= (uint64_t)1 << (i & 63);
                }
            }
            if (rc != 0) break;
        }
    }
    for (Py_ssize_t word = 0; rc == 0 && word < words; word++) {
        for (uint64_t bits = hit[word]; rc == 0 && bits; bits &= bits - 1) {
            Py_ssize_t i = word * 64 + __builtin_ctzll(bits);
            const json_field *f = &self->fields[i];
            PyObject *value = values[i];
            rc = ob_put(&b, PyBytes_AS_STRING(f->sep_prefix), PyBytes_GET_SIZE(f->sep_prefix));
            if (rc != 0) break;
            if (f->is_string) {
                Py_ssize_t n;
                const char *s;
                if (!PyUnicode_CheckExact(value)
                    || (s = PyUnicode_AsUTF8AndSize(value, &n)) == NULL) {
                    PyErr_Clear();
                    rc = 1;  /* not a str, or not encodable: the Python way decides */
                    break;
                }
                if (!PyUnicode_IS_ASCII(value)) b.wide = 1;
                rc = ob_json_string(&b, s, n);
            } else {
                rc = put_text(&b, value, 0);
            }
        }
    }
    if (values != local_values) PyMem_Free(values);
    if (ranks != local_ranks) PyMem_Free(ranks);
    if (hit != local_hit) PyMem_Free(hit);
    if (rc == 0) rc = ob_put(&b, "}\n", 2);
    if (rc == 0) result = ob_str(&b);
    else if (rc == 1) result = Py_NewRef(Py_None);
    if (b.data != b.local) PyMem_Free(b.data);
    return result;
}

static void JsonLine_dealloc(JsonLine *self)
{
    JsonLine_clear_fields(self);
    Py_XDECREF(self->lead);
    Py_XDECREF(self->after);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject JsonLineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ulogpy._fastpath.JsonLine",
    .tp_doc = PyDoc_STR("JsonLine(lead, after, with_ts, fields)(record, ts) -> str | None"),
    .tp_basicsize = sizeof(JsonLine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)JsonLine_init,
    .tp_dealloc = (destructor)JsonLine_dealloc,
    .tp_call = (ternaryfunc)JsonLine_call,
};

/* ------------------------------------------------------------- text lines */

/* TextLine(layout, fallback)(record) -> str: the line of ulogpy.render.textline's layout
   table (see there for the steps), walked in C.  `fallback` is the pure line of the same
   layout: it writes what is not handled here (a record that is no dict, a value whose
   text is not valid UTF-8, a call that gives no str, a pick by no int), so both ways
   give the same str or raise the same error. */

enum { STEP_TEXT, STEP_FIELD, STEP_SWITCH, STEP_PRESENT, STEP_WHEN, STEP_PICK, STEP_CALL };
#define TEXT_DEPTH_MAX 32

typedef struct text_prog text_prog;
typedef struct {
    int op;
    PyObject *key;          /* FIELD, SWITCH, WHEN, PICK: the record key (interned str) */
    PyObject *a, *b;        /* TEXT: a, the literal; FIELD: prefix, suffix (UTF-8 bytes) */
    PyObject *spec;         /* FIELD: the format spec, NULL when "" */
    PyObject *dflt;         /* FIELD, SWITCH, PICK: the value when absent; NULL: None */
    PyObject *index;        /* SWITCH: case value -> branch number (1..n); 0 is `other` */
    PyObject *keys;         /* PRESENT: tuple of interned keys */
    PyObject *texts;        /* PICK: tuple of UTF-8 bytes */
    PyObject *shift, *mask; /* PICK: ints (shift NULL when 0) */
    PyObject *fn;           /* CALL */
    Py_ssize_t nbranches;
    text_prog *branches;    /* SWITCH: `other`, then the cases; PRESENT: then, otherwise;
                               WHEN: then */
} text_step;

struct text_prog {
    Py_ssize_t n;
    text_step *steps;
};

static void prog_free(text_prog *p)
{
    for (Py_ssize_t i = 0; i < p->n; i++) {
        text_step *s = &p->steps[i];
        Py_XDECREF(s->key);
        Py_XDECREF(s->a);
        Py_XDECREF(s->b);
        Py_XDECREF(s->spec);
        Py_XDECREF(s->dflt);
        Py_XDECREF(s->index);
        Py_XDECREF(s->keys);
        Py_XDECREF(s->texts);
        Py_XDECREF(s->shift);
        Py_XDECREF(s->mask);
        Py_XDECREF(s->fn);
        for (Py_ssize_t j = 0; j < s->nbranches; j++) prog_free(&s->branches[j]);
        PyMem_Free(s->branches);
    }
    PyMem_Free(p->steps);
    p->steps = NULL;
    p->n = 0;
}

static int layout_error(PyObject *what)
{
    PyErr_Format(PyExc_ValueError, "text layout: not a step: %R", what);
    return -1;
}

/* The UTF-8 bytes of a literal; NULL with no error set when it is no str or not
   valid UTF-8 (the caller refuses the step). */
static PyObject *utf8_of(PyObject *text)
{
    if (!PyUnicode_Check(text)) return NULL;
    PyObject *bytes = PyUnicode_AsUTF8String(text);
    if (bytes == NULL && PyErr_ExceptionMatches(PyExc_UnicodeError)) PyErr_Clear();
    return bytes;
}

static PyObject *interned(PyObject *key)
{
    Py_INCREF(key);
    PyUnicode_InternInPlace(&key);
    return key;
}

static PyObject *none_is_null(PyObject *v)
{
    return v == Py_None ? NULL : Py_NewRef(v);
}

static int prog_build(text_prog *p, PyObject *layout, int depth);

/* Branch `k` of `s` from the steps `steps`. */
static int branch_build(text_step *s, Py_ssize_t k, PyObject *steps, int depth)
{
    return prog_build(&s->branches[k], steps, depth + 1);
}

static int branches_alloc(text_step *s, Py_ssize_t n)
{
    s->branches = PyMem_Calloc(n, sizeof(text_prog));
    if (s->branches == NULL) { PyErr_NoMemory(); return -1; }
    s->nbranches = n;
    return 0;
}

/* 1 the step is well formed (and built), 0 it is not, -1 an error raised. */
static int step_build(text_step *s, PyObject *step, int depth)
{
    Py_ssize_t size = PyTuple_Check(step) ? PyTuple_GET_SIZE(step) : 0;
    if (size == 0 || !PyLong_Check(PyTuple_GET_ITEM(step, 0))) return 0;
    long op = PyLong_AsLong(PyTuple_GET_ITEM(step, 0));
    if (op == -1 && PyErr_Occurred()) { PyErr_Clear(); return 0; }
    PyObject **it = &PyTuple_GET_ITEM(step, 0);
    s->op = (int)op;
    switch (op) {
    case STEP_TEXT:
        if (size != 2) return 0;
        return (s->a = utf8_of(it[1])) != NULL ? 1 : PyErr_Occurred() ? -1 : 0;
    case STEP_FIELD: {
        if (size != 6 || !PyUnicode_Check(it[1]) || !PyUnicode_Check(it[4])) return 0;
        PyObject *spec = utf8_of(it[4]);
        if (spec == NULL) return PyErr_Occurred() ? -1 : 0;
        int empty = PyBytes_GET_SIZE(spec) == 0;
        Py_DECREF(spec);
        if ((s->a = utf8_of(it[2])) == NULL || (s->b = utf8_of(it[3])) == NULL)
            return PyErr_Occurred() ? -1 : 0;
        s->spec = empty ? NULL : Py_NewRef(it[4]);
        s->dflt = none_is_null(it[5]);
        s->key = interned(it[1]);
        return 1;
    }
    case STEP_SWITCH: {
        if (size != 5 || !PyUnicode_Check(it[1]) || !PyDict_Check(it[2]) || !PyTuple_Check(it[3]))
            return 0;
        PyObject *value, *steps;
        Py_ssize_t pos = 0, k = 1;
        s->key = interned(it[1]);
        s->dflt = none_is_null(it[4]);
        if (branches_alloc(s, 1 + PyDict_GET_SIZE(it[2])) < 0 || (s->index = PyDict_New()) == NULL
            || branch_build(s, 0, it[3], depth) < 0)
            return -1;
        while (PyDict_Next(it[2], &pos, &value, &steps)) {
            PyObject *number = PyLong_FromSsize_t(k);
            int rc = number == NULL ? -1 : PyDict_SetItem(s->index, value, number);
            Py_XDECREF(number);
            if (rc < 0 || branch_build(s, k, steps, depth) < 0) return -1;
            k++;
        }
        return 1;
    }
    case STEP_PRESENT: {
        if (size != 4 || !PyTuple_Check(it[1]) || PyTuple_GET_SIZE(it[1]) == 0
            || !PyTuple_Check(it[2]) || !PyTuple_Check(it[3]))
            return 0;
        Py_ssize_t n = PyTuple_GET_SIZE(it[1]);
        for (Py_ssize_t i = 0; i < n; i++)
            if (!PyUnicode_Check(PyTuple_GET_ITEM(it[1], i))) return 0;
        if ((s->keys = PyTuple_New(n)) == NULL) return -1;
        for (Py_ssize_t i = 0; i < n; i++)
            PyTuple_SET_ITEM(s->keys, i, interned(PyTuple_GET_ITEM(it[1], i)));
        if (branches_alloc(s, 2) < 0 || branch_build(s, 0, it[2], depth) < 0
            || branch_build(s, 1, it[3], depth) < 0)
            return -1;
        return 1;
    }
    case STEP_WHEN:
        if (size != 3 || !PyUnicode_Check(it[1]) || !PyTuple_Check(it[2])) return 0;
        s->key = interned(it[1]);
        if (branches_alloc(s, 1) < 0 || branch_build(s, 0, it[2], depth) < 0) return -1;
        return 1;
    case STEP_PICK: {
        if (size != 6 || !PyUnicode_Check(it[1]) || !PyLong_Check(it[3]) || !PyLong_Check(it[4])
            || !PyTuple_Check(it[5]))
            return 0;
        Py_ssize_t n = PyTuple_GET_SIZE(it[5]);
        long shift = PyLong_AsLong(it[3]), mask = PyLong_AsLong(it[4]);
        if (PyErr_Occurred()) { PyErr_Clear(); return 0; }
        if (shift < 0 || mask < 0 || mask >= n) return 0;
        if ((s->texts = PyTuple_New(n)) == NULL) return -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *bytes = utf8_of(PyTuple_GET_ITEM(it[5], i));
            if (bytes == NULL) return PyErr_Occurred() ? -1 : 0;
            PyTuple_SET_ITEM(s->texts, i, bytes);
        }
        s->key = interned(it[1]);
        s->dflt = none_is_null(it[2]);
        s->shift = shift ? Py_NewRef(it[3]) : NULL;  /* (no `>> 0`: its error, if any) */
        s->mask = Py_NewRef(it[4]);
        return 1;
    }
    case STEP_CALL:
        if (size != 2 || !PyCallable_Check(it[1])) return 0;
        s->fn = Py_NewRef(it[1]);
        return 1;
    }
    return 0;
}

static int prog_build(text_prog *p, PyObject *layout, int depth)
{
    if (!PyTuple_Check(layout) || depth > TEXT_DEPTH_MAX) {
        PyErr_SetString(PyExc_ValueError, depth > TEXT_DEPTH_MAX
                        ? "text layout: branches nested too deep"
                        : "text layout: a tuple of steps");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(layout);
    p->steps = PyMem_Calloc(n ? n : 1, sizeof(text_step));
    if (p->steps == NULL) { PyErr_NoMemory(); return -1; }
    p->n = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *step = PyTuple_GET_ITEM(layout, i);
        int rc = step_build(&p->steps[i], step, depth);
        if (rc <= 0) return rc < 0 ? -1 : layout_error(step);
    }
    return 0;
}

/* The record's value of the step's key, else its default (NULL: none), borrowed;
   -1 in `*err` on an error. */
static inline PyObject *value_of(const text_step *s, PyObject *record, int *err)
{
    PyObject *v = PyDict_GetItemWithError(record, s->key);
    if (v == NULL && PyErr_Occurred()) *err = -1;
    return v != NULL ? v : s->dflt;
}

static int put_bytes(outbuf *b, PyObject *bytes)
{
    return ob_put(b, PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes));
}

/* A value's text with a format spec (format(value, spec)); 1: the fallback's. */
static int put_spec(outbuf *b, PyObject *value, PyObject *spec)
{
    if (spec == NULL) return put_text(b, value, 1);
    PyObject *text = PyObject_Format(value, spec);
    if (text == NULL) return -1;
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(text, &n);
    int rc = u == NULL ? (PyErr_Clear(), 1) : ob_put(b, u, n);
    Py_DECREF(text);
    return rc;
}

static int put_str(outbuf *b, PyObject *text)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(text, &n);
    if (u == NULL) { PyErr_Clear(); return 1; }
    return ob_put(b, u, n);
}

static int prog_run(const text_prog *p, PyObject *record, outbuf *b);

/* 0 done, -1 an error raised, 1 the fallback's to write. */
static int step_run(const text_step *s, PyObject *record, outbuf *b)
{
    int err = 0;
    switch (s->op) {
    case STEP_TEXT:
        return put_bytes(b, s->a);
    case STEP_FIELD: {
        PyObject *v = value_of(s, record, &err);
        if (err || v == NULL || (v == Py_None && s->dflt == NULL)) return err;
        int rc = put_bytes(b, s->a);
        if (rc == 0) rc = put_spec(b, v, s->spec);
        return rc == 0 ? put_bytes(b, s->b) : rc;
    }
    case STEP_SWITCH: {
        PyObject *v = value_of(s, record, &err);
        if (err) return -1;
        PyObject *w = PyDict_GetItemWithError(s->index, v == NULL ? Py_None : v);
        if (w == NULL && PyErr_Occurred()) return -1;  /* unhashable, as in Python */
        return prog_run(&s->branches[w == NULL ? 0 : PyLong_AsSsize_t(w)], record, b);
    }
    case STEP_PRESENT: {
        int all = 1;
        for (Py_ssize_t i = 0; all && i < PyTuple_GET_SIZE(s->keys); i++) {
            PyObject *v = PyDict_GetItemWithError(record, PyTuple_GET_ITEM(s->keys, i));
            if (v == NULL && PyErr_Occurred()) return -1;
            all = v != NULL && v != Py_None;
        }
        return prog_run(&s->branches[all ? 0 : 1], record, b);
    }
    case STEP_WHEN: {
        PyObject *v = PyDict_GetItemWithError(record, s->key);
        if (v == NULL) return PyErr_Occurred() ? -1 : 0;
        int true_ = PyObject_IsTrue(v);
        return true_ < 0 ? -1 : true_ ? prog_run(&s->branches[0], record, b) : 0;
    }
    case STEP_PICK: {
        PyObject *v = value_of(s, record, &err);
        if (err) return -1;
        if (v == NULL) v = Py_None;
        PyObject *shifted = s->shift == NULL ? Py_NewRef(v) : PyNumber_Rshift(v, s->shift);
        if (shifted == NULL) return -1;
        PyObject *masked = PyNumber_And(shifted, s->mask);
        Py_DECREF(shifted);
        if (masked == NULL) return -1;
        Py_ssize_t i = PyLong_CheckExact(masked) ? PyLong_AsSsize_t(masked) : -1;
        Py_DECREF(masked);
        if (i < 0 || i >= PyTuple_GET_SIZE(s->texts)) { PyErr_Clear(); return 1; }
        return put_bytes(b, PyTuple_GET_ITEM(s->texts, i));
    }
    case STEP_CALL: {
        PyObject *text = PyObject_CallOneArg(s->fn, record);
        if (text == NULL) return -1;
        int rc = PyUnicode_Check(text) ? put_str(b, text) : 1;  /* no str: join's error */
        Py_DECREF(text);
        return rc;
    }
    }
    return 0;
}

static int prog_run(const text_prog *p, PyObject *record, outbuf *b)
{
    for (Py_ssize_t i = 0; i < p->n; i++) {
        int rc = step_run(&p->steps[i], record, b);
        if (rc != 0) return rc;
    }
    return 0;
}

typedef struct {
    PyObject_HEAD
    text_prog prog;
    PyObject *fallback;
} TextLine;

static int TextLine_init(TextLine *self, PyObject *args, PyObject *kw)
{
    PyObject *layout, *fallback;
    static char *names[] = {"layout", "fallback", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO", names, &layout, &fallback)) return -1;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "TextLine: the fallback must be callable");
        return -1;
    }
    prog_free(&self->prog);
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    if (prog_build(&self->prog, layout, 0) < 0) {
        prog_free(&self->prog);
        return -1;
    }
    return 0;
}

static PyObject *TextLine_call(TextLine *self, PyObject *args, PyObject *kw)
{
    if ((kw != NULL && PyDict_GET_SIZE(kw)) || PyTuple_GET_SIZE(args) != 1) {
        PyErr_SetString(PyExc_TypeError, "line(record): one argument, no keywords");
        return NULL;
    }
    PyObject *record = PyTuple_GET_ITEM(args, 0);
    if (self->fallback == NULL) {  /* never set up, or cleared by the collector */
        PyErr_SetString(PyExc_ValueError, "TextLine: not set up");
        return NULL;
    }
    if (!PyDict_CheckExact(record)) return PyObject_CallOneArg(self->fallback, record);
    outbuf b;
    b.data = b.local;
    b.len = 0;
    b.cap = sizeof b.local;
    b.wide = 1;  /* (its steps do not say which bytes they add: always decoded) */
    PyObject *result = NULL;
    int rc = prog_run(&self->prog, record, &b);
    if (rc == 0) result = ob_str(&b);
    if (b.data != b.local) PyMem_Free(b.data);
    if (rc == 1) result = PyObject_CallOneArg(self->fallback, record);
    return result;
}

/* The objects a layout holds that may hold this line again: a CALL's function (whose
   module holds the line), a default, a case value. */
static int prog_traverse(const text_prog *p, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < p->n; i++) {
        const text_step *s = &p->steps[i];
        Py_VISIT(s->fn);
        Py_VISIT(s->dflt);
        Py_VISIT(s->index);
        for (Py_ssize_t j = 0; j < s->nbranches; j++) {
            int rc = prog_traverse(&s->branches[j], visit, arg);
            if (rc) return rc;
        }
    }
    return 0;
}

static int TextLine_traverse(TextLine *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    return prog_traverse(&self->prog, visit, arg);
}

static int TextLine_clear(TextLine *self)
{
    Py_CLEAR(self->fallback);
    prog_free(&self->prog);
    return 0;
}

static void TextLine_dealloc(TextLine *self)
{
    PyObject_GC_UnTrack(self);
    TextLine_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject TextLineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ulogpy._fastpath.TextLine",
    .tp_doc = PyDoc_STR("TextLine(layout, fallback)(record) -> str"),
    .tp_basicsize = sizeof(TextLine),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)TextLine_traverse,
    .tp_clear = (inquiry)TextLine_clear,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)TextLine_init,
    .tp_dealloc = (destructor)TextLine_dealloc,
    .tp_call = (ternaryfunc)TextLine_call,
};

/* ------------------------------------------------------------- addresses */

#include <arpa/inet.h>
#include <sys/socket.h>

/* AddressText(pairs, families, texts, max_texts, fallback)(record): IP2STR's conversion.
   `pairs` is IP2STR's table of (address key, text key), `families` its map of
   oob.family to AF_INET / AF_INET6, `texts` its memo of texts per AF (dicts of bytes to
   str, cleared when they reach `max_texts`; inet_ntop formats with sprintf, and the same
   few addresses come again and again).  Each address present (bytes of the family's
   size) gets its text under the text key.  Anything else -- a family not in the map, an
   address of another type or size -- is the Python way's to decide (`fallback`, the
   pure interp, which counts and logs as it always does): it is called on the record and
   its result returned.  The keys set before that are set again by it, to the same
   texts. */
typedef struct {
    PyObject_HEAD
    PyObject *pairs;     /* tuple of (str, str) */
    PyObject *families;  /* dict int -> int */
    PyObject *texts;     /* dict int -> dict bytes -> str */
    Py_ssize_t max_texts;
    PyObject *fallback;
    PyObject *family_key;
} AddressText;

static int AddressText_init(AddressText *self, PyObject *args, PyObject *kw)
{
    PyObject *pairs, *families, *texts, *fallback;
    Py_ssize_t max_texts;
    if (!PyArg_ParseTuple(args, "O!O!O!nO:AddressText", &PyTuple_Type, &pairs, &PyDict_Type,
                          &families, &PyDict_Type, &texts, &max_texts, &fallback))
        return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pairs); i++) {
        PyObject *pair = PyTuple_GET_ITEM(pairs, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2
            || !PyUnicode_CheckExact(PyTuple_GET_ITEM(pair, 0))
            || !PyUnicode_CheckExact(PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "pairs must be (str, str) tuples");
            return -1;
        }
    }
    PyObject *family_key = PyUnicode_FromString("oob.family");
    if (family_key == NULL) return -1;
    Py_XSETREF(self->pairs, Py_NewRef(pairs));
    Py_XSETREF(self->families, Py_NewRef(families));
    Py_XSETREF(self->texts, Py_NewRef(texts));
    self->max_texts = max_texts;
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    Py_XSETREF(self->family_key, family_key);
    return 0;
}

static PyObject *AddressText_call(AddressText *self, PyObject *args, PyObject *kw)
{
    PyObject *record;
    if ((kw != NULL && PyDict_GET_SIZE(kw)) || PyTuple_GET_SIZE(args) != 1) {
        PyErr_SetString(PyExc_TypeError, "AddressText(record) takes one argument");
        return NULL;
    }
    record = PyTuple_GET_ITEM(args, 0);
    if (self->pairs == NULL || self->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "AddressText is not initialised");
        return NULL;
    }
    if (!PyDict_CheckExact(record))
        return PyObject_CallOneArg(self->fallback, record);
    PyObject *family = PyDict_GetItemWithError(record, self->family_key);
    if (family == NULL && PyErr_Occurred()) return NULL;
    PyObject *af_obj = family == NULL || !PyLong_CheckExact(family) ? NULL
        : PyDict_GetItemWithError(self->families, family);
    if (af_obj == NULL) {
        if (PyErr_Occurred()) return NULL;
        return PyObject_CallOneArg(self->fallback, record);
    }
    long af = PyLong_AsLong(af_obj);
    Py_ssize_t size = af == AF_INET ? 4 : af == AF_INET6 ? 16 : -1;
    PyObject *memo = size < 0 ? NULL : PyDict_GetItemWithError(self->texts, af_obj);
    if (memo == NULL || !PyDict_CheckExact(memo)) {
        if (PyErr_Occurred()) return NULL;
        return PyObject_CallOneArg(self->fallback, record);
    }
    char text[INET6_ADDRSTRLEN];
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(self->pairs); i++) {
        PyObject *pair = PyTuple_GET_ITEM(self->pairs, i);
        PyObject *value = PyDict_GetItemWithError(record, PyTuple_GET_ITEM(pair, 0));
        if (value == NULL) {
            if (PyErr_Occurred()) return NULL;
            continue;
        }
        if (value == Py_None) continue;
        if (!PyBytes_CheckExact(value) || PyBytes_GET_SIZE(value) != size)
            return PyObject_CallOneArg(self->fallback, record);
        PyObject *str = PyDict_GetItemWithError(memo, value);
        if (str != NULL) {
            Py_INCREF(str);
        } else {
            if (PyErr_Occurred()) return NULL;
            if (inet_ntop((int)af, PyBytes_AS_STRING(value), text, sizeof text) == NULL)
                return PyObject_CallOneArg(self->fallback, record);
            str = PyUnicode_DecodeASCII(text, (Py_ssize_t)strlen(text), NULL);
            if (str == NULL) return NULL;
            if (PyDict_GET_SIZE(memo) >= self->max_texts) PyDict_Clear(memo);
            if (PyDict_SetItem(memo, value, str) < 0) { Py_DECREF(str); return NULL; }
        }
        int rc = PyDict_SetItem(record, PyTuple_GET_ITEM(pair, 1), str);
        Py_DECREF(str);
        if (rc < 0) return NULL;
    }
    Py_RETURN_NONE;
}

/* The fallback is the plugin's bound method, and the plugin holds this object: a
   cycle, which the garbage collector must be able to see and break. */
static int AddressText_traverse(AddressText *self, visitproc visit, void *arg)
{
    Py_VISIT(self->pairs);
    Py_VISIT(self->families);
    Py_VISIT(self->texts);
    Py_VISIT(self->fallback);
    return 0;
}

static int AddressText_clear(AddressText *self)
{
    Py_CLEAR(self->pairs);
    Py_CLEAR(self->families);
    Py_CLEAR(self->texts);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->family_key);
    return 0;
}

static void AddressText_dealloc(AddressText *self)
{
    PyObject_GC_UnTrack(self);
    AddressText_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject AddressTextType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ulogpy._fastpath.AddressText",
    .tp_doc = PyDoc_STR("AddressText(pairs, families, texts, max_texts, fallback)(record)"),
    .tp_basicsize = sizeof(AddressText),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)AddressText_traverse,
    .tp_clear = (inquiry)AddressText_clear,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)AddressText_init,
    .tp_dealloc = (destructor)AddressText_dealloc,
    .tp_call = (ternaryfunc)AddressText_call,
};

/* ------------------------------------------------------------ db rows */

/* RowBuild(columns, fallback)(record) -> tuple: a database row, the twin of the row
   builder `ulogpy.db.render.row_builder` generates in Python.  `columns` is a tuple of
   (key, test, render) from the same table (`render._AS_IS`): the value under `key` goes
   into the row as it is when it passes `test` -- ROW_NULL: the column is always NULL;
   ROW_I64: an exact int in -(2**63 - 1) .. 2**63 - 1; ROW_STR: an exact str with no NUL;
   ROW_INT: an exact int; ROW_CALL: never -- and otherwise None stays None and anything
   else is `render(value)`, whose errors propagate as they do in Python.  A record that
   is not exactly a dict goes to `fallback` (the Python builder).  Why: the generated
   builder costs about 4 us per 23-column row in Python, once per row of every batch. */
enum { ROW_NULL, ROW_I64, ROW_STR, ROW_INT, ROW_CALL };

typedef struct {
    PyObject_HEAD
    PyObject *keys;     /* tuple of str */
    PyObject *renders;  /* tuple of callables (None for ROW_NULL) */
    int *tests;
    Py_ssize_t width;
    PyObject *fallback;
} RowBuild;

static int RowBuild_init(RowBuild *self, PyObject *args, PyObject *kw)
{
    PyObject *columns, *fallback;
    if (!PyArg_ParseTuple(args, "O!O:RowBuild", &PyTuple_Type, &columns, &fallback))
        return -1;
    Py_ssize_t width = PyTuple_GET_SIZE(columns);
    PyObject *keys = PyTuple_New(width), *renders = PyTuple_New(width);
    int *tests = PyMem_Calloc(width ? (size_t)width : 1, sizeof(int));
    if (keys == NULL || renders == NULL || tests == NULL) goto fail;
    for (Py_ssize_t i = 0; i < width; i++) {
        PyObject *col = PyTuple_GET_ITEM(columns, i);
        long test;
        if (!PyTuple_Check(col) || PyTuple_GET_SIZE(col) != 3
            || !PyUnicode_CheckExact(PyTuple_GET_ITEM(col, 0))
            || !PyLong_Check(PyTuple_GET_ITEM(col, 1))
            || (test = PyLong_AsLong(PyTuple_GET_ITEM(col, 1))) < ROW_NULL || test > ROW_CALL
            || (test != ROW_NULL && !PyCallable_Check(PyTuple_GET_ITEM(col, 2)))) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "columns must be (str, test, render) "
                                "tuples, render callable unless test is ROW_NULL");
            goto fail;
        }
        tests[i] = (int)test;
        PyTuple_SET_ITEM(keys, i, Py_NewRef(PyTuple_GET_ITEM(col, 0)));
        PyTuple_SET_ITEM(renders, i, Py_NewRef(PyTuple_GET_ITEM(col, 2)));
    }
    Py_XSETREF(self->keys, keys);
    Py_XSETREF(self->renders, renders);
    PyMem_Free(self->tests);
    self->tests = tests;
    self->width = width;
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    return 0;
fail:
    Py_XDECREF(keys);
    Py_XDECREF(renders);
    PyMem_Free(tests);
    return -1;
}

/* Whether `value` goes into the row unchanged under `test`. */
static int row_as_is(int test, PyObject *value)
{
    switch (test) {
    case ROW_I64: {
        if (!PyLong_CheckExact(value)) return 0;
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        return overflow == 0 && v != LLONG_MIN;
    }
    case ROW_STR:
        return PyUnicode_CheckExact(value)
            && PyUnicode_FindChar(value, 0, 0, PyUnicode_GET_LENGTH(value), 1) == -1;
    case ROW_INT:
        return PyLong_CheckExact(value);
    default:
        return 0;
    }
}

static PyObject *RowBuild_call(RowBuild *self, PyObject *args, PyObject *kw)
{
    if ((kw != NULL && PyDict_GET_SIZE(kw)) || PyTuple_GET_SIZE(args) != 1) {
        PyErr_SetString(PyExc_TypeError, "RowBuild(record) takes one argument");
        return NULL;
    }
    PyObject *record = PyTuple_GET_ITEM(args, 0);
    if (self->keys == NULL || self->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RowBuild is not initialised");
        return NULL;
    }
    if (!PyDict_CheckExact(record))
        return PyObject_CallOneArg(self->fallback, record);
    PyObject *row = PyTuple_New(self->width);
    if (row == NULL) return NULL;
    for (Py_ssize_t i = 0; i < self->width; i++) {
        int test = self->tests[i];
        PyObject *value = test == ROW_NULL ? NULL
            : PyDict_GetItemWithError(record, PyTuple_GET_ITEM(self->keys, i));
        PyObject *cell;
        if (value == NULL || value == Py_None) {
            if (PyErr_Occurred()) { Py_DECREF(row); return NULL; }
            cell = Py_NewRef(Py_None);
        } else if (row_as_is(test, value)) {
            cell = Py_NewRef(value);
        } else {
            if (PyErr_Occurred()) { Py_DECREF(row); return NULL; }
            Py_INCREF(value);  /* (borrowed from the record, which Python code may change) */
            cell = PyObject_CallOneArg(PyTuple_GET_ITEM(self->renders, i), value);
            Py_DECREF(value);
            if (cell == NULL) { Py_DECREF(row); return NULL; }
        }
        PyTuple_SET_ITEM(row, i, cell);
    }
    return row;
}

static int RowBuild_traverse(RowBuild *self, visitproc visit, void *arg)
{
    Py_VISIT(self->keys);
    Py_VISIT(self->renders);
    Py_VISIT(self->fallback);
    return 0;
}

static int RowBuild_clear(RowBuild *self)
{
    Py_CLEAR(self->keys);
    Py_CLEAR(self->renders);
    Py_CLEAR(self->fallback);
    return 0;
}

static void RowBuild_dealloc(RowBuild *self)
{
    PyObject_GC_UnTrack(self);
    RowBuild_clear(self);
    PyMem_Free(self->tests);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject RowBuildType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ulogpy._fastpath.RowBuild",
    .tp_doc = PyDoc_STR("RowBuild(columns, fallback)(record) -> tuple"),
    .tp_basicsize = sizeof(RowBuild),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)RowBuild_traverse,
    .tp_clear = (inquiry)RowBuild_clear,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RowBuild_init,
    .tp_dealloc = (destructor)RowBuild_dealloc,
    .tp_call = (ternaryfunc)RowBuild_call,
};

/* ------------------------------------------------------------ spool lines */

/* spool_values(record, keys) -> dict | None: what `ulogpy.delivery.spool.encode_record`
   hands to orjson, for the values it meets in a burst.  The keys in `keys` (a frozenset,
   or None for all), in the record's order: an exact int or str as it is, exact bytes as
   [hex], anything that is neither bytes-like nor an int or str left out.  A subclass of
   int or str, a bytearray or a memoryview: None, and the caller takes the Python way.
   A record that is not exactly a dict: None too.  Why: the Python loop costs about 4 us
   a conntrack record, and in a burst every record a database output cannot take yet
   goes through it. */
static PyObject *hex_list(const unsigned char *data, Py_ssize_t size)
{
    static const char digits[] = "0123456789abcdef";
    PyObject *text = PyUnicode_New(2 * size, 127);
    if (text == NULL) return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    for (Py_ssize_t i = 0; i < size; i++) {
        out[2 * i] = (Py_UCS1)digits[data[i] >> 4];
        out[2 * i + 1] = (Py_UCS1)digits[data[i] & 15];
    }
    PyObject *list = PyList_New(1);
    if (list == NULL) { Py_DECREF(text); return NULL; }
    PyList_SET_ITEM(list, 0, text);
    return list;
}

static PyObject *spool_values(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || (args[1] != Py_None && !PyFrozenSet_CheckExact(args[1]))) {
        PyErr_SetString(PyExc_TypeError, "spool_values(record: dict, keys: frozenset | None)");
        return NULL;
    }
    PyObject *record = args[0], *keys = args[1];
    if (!PyDict_CheckExact(record)) Py_RETURN_NONE;  /* (its own items(), maybe) */
    PyObject *out = PyDict_New();
    if (out == NULL) return NULL;
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (PyDict_Next(record, &pos, &name, &value)) {
        if (keys != Py_None) {
            int wanted = PySet_Contains(keys, name);
            if (wanted < 0) goto fail;
            if (!wanted) continue;
        }
        PyObject *kept;
        if (PyLong_CheckExact(value) || PyUnicode_CheckExact(value)) {
            kept = Py_NewRef(value);
        } else if (PyBytes_CheckExact(value)) {
            kept = hex_list((const unsigned char *)PyBytes_AS_STRING(value),
                            PyBytes_GET_SIZE(value));
            if (kept == NULL) goto fail;
        } else if (PyLong_Check(value) || PyUnicode_Check(value) || PyBytes_Check(value)
                   || PyByteArray_Check(value) || PyMemoryView_Check(value)) {
            Py_DECREF(out);
            Py_RETURN_NONE;
        } else {
            continue;
        }
        int rc = PyDict_SetItem(out, name, kept);
        Py_DECREF(kept);
        if (rc < 0) goto fail;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* spool_unhex(data) -> data | None: `decode_record`'s second half, on what orjson gave:
   every value that is a list, [hex], becomes the bytes it spells, in place.  Anything
   else in a list (not one str of hex digit pairs), or data that is not a dict: None, and
   the caller takes the Python way, which raises what it raises. */
static int hex_digit(Py_UCS1 c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static PyObject *spool_unhex(PyObject *module, PyObject *data)
{
    if (!PyDict_CheckExact(data)) Py_RETURN_NONE;
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    /* first check every list, so that a line the Python way must judge is left whole */
    while (PyDict_Next(data, &pos, &name, &value)) {
        if (!PyList_CheckExact(value)) continue;
        PyObject *text = PyList_GET_SIZE(value) == 1 ? PyList_GET_ITEM(value, 0) : NULL;
        if (text == NULL || !PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text)
            || PyUnicode_GET_LENGTH(text) % 2)
            Py_RETURN_NONE;
        const Py_UCS1 *hex = PyUnicode_1BYTE_DATA(text);
        for (Py_ssize_t i = 0; i < PyUnicode_GET_LENGTH(text); i++)
            if (hex_digit(hex[i]) < 0) Py_RETURN_NONE;
    }
    pos = 0;
    while (PyDict_Next(data, &pos, &name, &value)) {
        if (!PyList_CheckExact(value)) continue;
        PyObject *text = PyList_GET_ITEM(value, 0);
        Py_ssize_t size = PyUnicode_GET_LENGTH(text) / 2;
        const Py_UCS1 *hex = PyUnicode_1BYTE_DATA(text);
        PyObject *raw = PyBytes_FromStringAndSize(NULL, size);
        if (raw == NULL) return NULL;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(raw);
        for (Py_ssize_t i = 0; i < size; i++)
            out[i] = (unsigned char)(hex_digit(hex[2 * i]) << 4 | hex_digit(hex[2 * i + 1]));
        /* replacing the value of a key that is there does not resize the dict: the walk
           goes on safely */
        int rc = PyDict_SetItem(data, name, raw);
        Py_DECREF(raw);
        if (rc < 0) return NULL;
    }
    return Py_NewRef(data);
}

/* ------------------------------------------------------------- reading */

#include <errno.h>

/* recv_batch(fd, buf, count) -> (datagrams, errno): up to `count` datagrams of a
   non-blocking socket, each copied out of `buf` at its own size, without letting go of
   the GIL between them.  Why: a socket's recv_into releases the GIL, and with a busy
   writer thread waiting for it each datagram became a hand-over between threads (and the
   reader then waited for the writer's turn to end).  Stops at the first error: errno 0
   when `count` datagrams came, else the error (EAGAIN: nothing more now; ENOBUFS: the
   kernel dropped messages; the caller decides). */
static PyObject *recv_batch(PyObject *module, PyObject *args)
{
    int fd, count;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "iw*i", &fd, &view, &count)) return NULL;
    PyObject *list = PyList_New(0);
    int err = 0;
    if (list == NULL) { PyBuffer_Release(&view); return NULL; }
    for (int i = 0; i < count; i++) {
        ssize_t n = recv(fd, view.buf, (size_t)view.len, MSG_DONTWAIT);
        if (n < 0) { err = errno; break; }
        PyObject *data = PyBytes_FromStringAndSize(view.buf, n);
        if (data == NULL || PyList_Append(list, data) < 0) {
            Py_XDECREF(data);
            Py_DECREF(list);
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_DECREF(data);
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(Ni)", list, err);
}

static PyMethodDef module_methods[] = {
    {"spool_values", (PyCFunction)(void (*)(void))spool_values, METH_FASTCALL,
     PyDoc_STR("spool_values(record, keys) -> dict | None")},
    {"spool_unhex", spool_unhex, METH_O, PyDoc_STR("spool_unhex(data) -> data | None")},
    {"recv_batch", recv_batch, METH_VARARGS,
     PyDoc_STR("recv_batch(fd, buf, count) -> (datagrams, errno)")},
    {NULL, NULL, 0, NULL},
};

/* ----------------------------------------------------------------- module */

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ulogpy._fastpath",
    .m_doc = "The compiled per-event path: a netlink walker, conntrack's decode, IP2STR's "
             "conversion, a JSON line writer, a text line writer, a database row "
             "builder and the spool's record values, driven by tables given from Python.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    if (PyType_Ready(&WalkerType) < 0 || PyType_Ready(&FlatWalkerType) < 0
        || PyType_Ready(&CtDecodeType) < 0
        || PyType_Ready(&JsonLineType) < 0
        || PyType_Ready(&AddressTextType) < 0 || PyType_Ready(&TextLineType) < 0
        || PyType_Ready(&RowBuildType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Walker", (PyObject *)&WalkerType) < 0
        || PyModule_AddObjectRef(m, "CtDecode", (PyObject *)&CtDecodeType) < 0
        || PyModule_AddObjectRef(m, "FlatWalker", (PyObject *)&FlatWalkerType) < 0
        || PyModule_AddObjectRef(m, "JsonLine", (PyObject *)&JsonLineType) < 0
        || PyModule_AddObjectRef(m, "AddressText", (PyObject *)&AddressTextType) < 0
        || PyModule_AddObjectRef(m, "TextLine", (PyObject *)&TextLineType) < 0
        || PyModule_AddObjectRef(m, "RowBuild", (PyObject *)&RowBuildType) < 0
        || PyModule_AddIntConstant(m, "ROW_NULL", ROW_NULL) < 0
        || PyModule_AddIntConstant(m, "ROW_I64", ROW_I64) < 0
        || PyModule_AddIntConstant(m, "ROW_STR", ROW_STR) < 0
        || PyModule_AddIntConstant(m, "ROW_INT", ROW_INT) < 0
        || PyModule_AddIntConstant(m, "ROW_CALL", ROW_CALL) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

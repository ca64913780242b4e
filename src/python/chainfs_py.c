/* chainfs_py.c - the CPython extension `chainfs._chainfs`: Python objects
 * over the USRBIO C API (hf3fs_usrbio.h).
 *
 * Two types:
 *   iovec   a byte range of a registered buffer. A root iovec owns the
 *           buffer's registration (struct hf3fs_iov) and its memory (a
 *           buffer export, our own mapping of a /dev/shm file, or memory
 *           the library created). Slicing gives sub-iovecs that hold a
 *           reference to the root, so the memory and the registration live
 *           as long as any slice, memoryview or in-flight I/O uses them.
 *           It supports the buffer protocol (writable, 1-D bytes).
 *   ioring  a submission/completion ring (struct hf3fs_ior). prepare()
 *           keeps the iovec and the userdata alive until wait() hands the
 *           completion back; wait() releases the GIL while it blocks.
 *
 * Completions are matched to their request through the cqe's userdata,
 * which is a token we allocate (a counter, never a pointer), looked up in
 * a dict of pending requests. A token the dict does not know (a cqe the
 * library or daemon should never post) is counted and dropped instead of
 * being dereferenced. Matching by token rather than by slot index keeps a
 * prepare() in one thread and a wait() in another correct: the library
 * frees a slot inside hf3fs_wait_for_ios, before we hold the GIL again, so
 * the slot may already carry a new request when we look.
 *
 * Threads: the C API allows, per ring, one thread at a time preparing and
 * submitting and one thread at a time waiting. prepare() and submit() run
 * with the GIL held, which serialises them; wait() releases the GIL while
 * it blocks and takes the ring's wait_lock for its whole run, so Python
 * threads sharing a ring need no locking of their own. destroy() refuses
 * (EBUSY) while another thread waits on the ring.
 *
 * Fork: registrations and rings belong to the process that made them. A
 * forked child (a DataLoader worker) inherits our objects; when it drops
 * them it only unmaps its own copy and never unlinks the parent's
 * registration symlink or destroys the parent's ring (the library would
 * do both), and it cannot use an inherited ring (EBADF): it makes its own.
 *
 * Errors: a -errno from the C API raises OSError(errno, strerror) (Python
 * picks the subclass, e.g. FileNotFoundError for ENOENT); bad Python
 * arguments raise TypeError/ValueError as Python's own functions do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <pythread.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hf3fs_usrbio.h"

/* How long one blocking hf3fs_wait_for_ios call may last before wait()
 * takes the GIL back to look for signals (Ctrl-C); completions harvested
 * so far are kept for the next wait() if a signal handler raises. */
#define CFSPY_WAIT_SLICE_NS (100 * 1000 * 1000LL)

enum cfspy_mem {
	CFSPY_MEM_NONE,   /* a sub-iovec: the root owns the memory */
	CFSPY_MEM_EXPORT, /* a buffer export of a Python object (view) */
	CFSPY_MEM_MMAP,   /* our own MAP_SHARED mapping of a shm file */
	CFSPY_MEM_LIB,    /* created by hf3fs_iovcreate: hf3fs_iovdestroy frees it */
};

typedef struct cfspy_iov {
	PyObject ob_base;       /* PyObject_HEAD */
	struct cfspy_iov *root; /* strong ref; NULL when this is a root */
	uint8_t *ptr;           /* first byte of this range */
	size_t size;            /* bytes in this range */
	int64_t result;         /* last completion: bytes done or -errno */
	PyObject *userdata;     /* last completion's userdata (strong, may be NULL) */
	int pending;            /* ring requests referencing this object */
	/* Root only. */
	struct hf3fs_iov *hiov; /* owned; NULL once released */
	enum cfspy_mem mem;
	Py_buffer view; /* CFSPY_MEM_EXPORT */
	void *map;      /* CFSPY_MEM_MMAP */
	size_t map_len;
	char *link;  /* registration symlink, unlinked on release (owned) */
	pid_t owner; /* the process that registered it */
} cfspy_iov;

typedef struct {
	PyObject ob_base;      /* PyObject_HEAD */
	struct hf3fs_ior *ior; /* owned; NULL after destroy */
	int entries;
	bool for_read;
	PyObject *pending; /* dict: token -> (iovec, userdata) */
	PyObject *ready;   /* list of finished iovecs a cancelled wait kept */
	uint64_t next_token;
	int waiters;                  /* threads inside wait() without the GIL */
	PyThread_type_lock wait_lock; /* one wait() at a time (the C contract) */
	uint64_t stray_cqes;          /* completions with a token we never issued */
	pid_t owner;                  /* the process that created the ring */
} cfspy_ior;

static PyTypeObject cfspy_iov_type;
static PyTypeObject cfspy_ior_type;

/* ---------------------------------------------------------------- errors */

/* Raises OSError for ERR (a positive errno) and returns NULL. */
static PyObject *cfspy_oserror(int err)
{
	if (err <= 0)
		err = EIO;
	PyObject *args = Py_BuildValue("(is)", err, strerror(err));
	if (args) {
		PyErr_SetObject(PyExc_OSError, args);
		Py_DECREF(args);
	}
	return NULL;
}

static PyObject *cfspy_oserror_path(int err, PyObject *path)
{
	PyObject *args = Py_BuildValue("(isO)", err, strerror(err), path);
	if (args) {
		PyErr_SetObject(PyExc_OSError, args);
		Py_DECREF(args);
	}
	return NULL;
}

/* ---------------------------------------------------------------- iovec */

static cfspy_iov *cfspy_iov_root(cfspy_iov *v)
{
	return v->root ? v->root : v;
}

/* Releases a root's registration and memory; idempotent. The symlink goes
 * first so the mount stops using the memory before we unmap it. */
static void cfspy_iov_close_root(cfspy_iov *v)
{
	int mine = v->owner == getpid();
	if (v->link) {
		if (mine)
			unlink(v->link);
		PyMem_Free(v->link);
		v->link = NULL;
	}
	if (v->hiov) {
		/* In a forked child the library's handle is the parent's: leave it
		 * (a small leak) rather than deregister the parent's buffer. */
		if (v->mem == CFSPY_MEM_LIB && mine)
			hf3fs_iovdestroy(v->hiov);
		PyMem_Free(v->hiov);
		v->hiov = NULL;
	}
	if (v->mem == CFSPY_MEM_EXPORT)
		PyBuffer_Release(&v->view);
	else if (v->mem == CFSPY_MEM_MMAP && v->map)
		munmap(v->map, v->map_len);
	v->map = NULL;
	v->mem = CFSPY_MEM_NONE;
	v->ptr = NULL;
	v->size = 0;
}

static void cfspy_iov_dealloc(cfspy_iov *v)
{
	if (!v->root)
		cfspy_iov_close_root(v);
	Py_CLEAR(v->root);
	Py_CLEAR(v->userdata);
	Py_TYPE(v)->tp_free((PyObject *)v);
}

static cfspy_iov *cfspy_iov_alloc(void)
{
	cfspy_iov *v = PyObject_New(cfspy_iov, &cfspy_iov_type);
	if (!v)
		return NULL;
	v->root = NULL;
	v->ptr = NULL;
	v->size = 0;
	v->result = 0;
	v->userdata = NULL;
	v->pending = 0;
	v->hiov = NULL;
	v->mem = CFSPY_MEM_NONE;
	memset(&v->view, 0, sizeof(v->view));
	v->map = NULL;
	v->map_len = 0;
	v->link = NULL;
	v->owner = getpid();
	return v;
}

/* A new sub-iovec over [ptr, ptr + size) of ROOT's buffer. */
static cfspy_iov *cfspy_iov_sub(cfspy_iov *root, uint8_t *ptr, size_t size)
{
	cfspy_iov *s = cfspy_iov_alloc();
	if (!s)
		return NULL;
	Py_INCREF(root);
	s->root = root;
	s->ptr = ptr;
	s->size = size;
	return s;
}

/* Parses a 16-byte buffer id: bytes-like of 16 bytes, a 32-hex-digit
 * string (dashes allowed, as str(uuid.uuid4()) writes them), or a
 * uuid.UUID (its .bytes). Returns 0 or -1 with an exception set. */
static int cfspy_parse_id(PyObject *o, uint8_t id[16])
{
	if (PyUnicode_Check(o)) {
		const char *s = PyUnicode_AsUTF8(o);
		if (!s)
			return -1;
		int n = 0;
		for (; *s; s++) {
			if (*s == '-')
				continue;
			int d;
			if (*s >= '0' && *s <= '9')
				d = *s - '0';
			else if (*s >= 'a' && *s <= 'f')
				d = *s - 'a' + 10;
			else if (*s >= 'A' && *s <= 'F')
				d = *s - 'A' + 10;
			else
				goto bad;
			if (n >= 32)
				goto bad;
			if (n % 2 == 0)
				id[n / 2] = (uint8_t)(d << 4);
			else
				id[n / 2] |= (uint8_t)d;
			n++;
		}
		if (n != 32)
			goto bad;
		return 0;
	bad:
		PyErr_Format(PyExc_ValueError, "id '%U' is not a valid UUID", o);
		return -1;
	}
	PyObject *bytes = NULL;
	if (PyObject_HasAttrString(o, "bytes") && !PyObject_CheckBuffer(o))
		bytes = PyObject_GetAttrString(o, "bytes"); /* uuid.UUID */
	PyObject *src = bytes ? bytes : o;
	Py_buffer b;
	if (PyObject_GetBuffer(src, &b, PyBUF_SIMPLE) < 0) {
		Py_XDECREF(bytes);
		return -1;
	}
	int rc = 0;
	if (b.len != 16) {
		PyErr_SetString(PyExc_ValueError, "id must be 16 bytes");
		rc = -1;
	} else {
		memcpy(id, b.buf, 16);
	}
	PyBuffer_Release(&b);
	Py_XDECREF(bytes);
	return rc;
}

/* Fills a fresh root's hiov through hf3fs_iovwrap over [base, base+size). */
static int cfspy_iov_wrap(cfspy_iov *v, void *base, size_t size, const uint8_t id[16],
                          const char *mount, size_t block_size, int numa)
{
	v->hiov = PyMem_Calloc(1, sizeof(*v->hiov));
	if (!v->hiov) {
		PyErr_NoMemory();
		return -1;
	}
	int rc = hf3fs_iovwrap(v->hiov, base, id, mount, size, block_size, numa);
	if (rc < 0) {
		PyMem_Free(v->hiov);
		v->hiov = NULL;
		cfspy_oserror(-rc);
		return -1;
	}
	v->ptr = base;
	v->size = size;
	return 0;
}

/* iovec(base, id, hf3fs_mount_point, block_size=0, numa=-1): wraps the
 * memory of a writable buffer (3FS's hf3fs_py_usrbio.iovec). The buffer
 * stays exported (and so cannot be resized or released) while the iovec
 * or any slice of it lives. Registration with the mount is the caller's
 * business, as in 3FS (make_iovec does it). */
static PyObject *cfspy_iov_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"base", "id", "hf3fs_mount_point", "block_size", "numa", NULL};
	PyObject *base, *idobj, *mount;
	Py_ssize_t block_size = 0;
	int numa = -1;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO&|ni:iovec", kwlist, &base, &idobj,
	                                 PyUnicode_FSConverter, &mount, &block_size, &numa))
		return NULL;
	uint8_t id[16];
	cfspy_iov *v = NULL;
	if (block_size < 0) {
		PyErr_SetString(PyExc_ValueError, "block_size must be >= 0");
		goto fail;
	}
	if (cfspy_parse_id(idobj, id) < 0)
		goto fail;
	v = cfspy_iov_alloc();
	if (!v)
		goto fail;
	if (PyObject_GetBuffer(base, &v->view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
		goto fail;
	v->mem = CFSPY_MEM_EXPORT;
	if (cfspy_iov_wrap(v, v->view.buf, (size_t)v->view.len, id, PyBytes_AS_STRING(mount),
	                   (size_t)block_size, numa) < 0)
		goto fail;
	Py_DECREF(mount);
	return (PyObject *)v;
fail:
	Py_XDECREF(v);
	Py_DECREF(mount);
	return NULL;
}

/* _iovec_from_shm(path, size, id, mount, block_size=0, numa=-1, link=None)
 * maps the shm file PATH ourselves (MAP_SHARED, SIZE bytes) and wraps that
 * mapping, so the iovec does not depend on the lifetime of a
 * SharedMemory object's own mapping: the application may close() its
 * SharedMemory while the iovec lives and both views see the same pages.
 * LINK, when given, is a registration symlink the iovec removes when its
 * last user goes away. */
static PyObject *cfspy_iov_from_shm(PyObject *mod, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"path", "size", "id", "mount", "block_size", "numa", "link", NULL};
	PyObject *path = NULL, *idobj, *mount = NULL, *link = Py_None;
	Py_ssize_t size, block_size = 0;
	int numa = -1;
	cfspy_iov *v = NULL;
	int fd = -1;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O&nOO&|niO:_iovec_from_shm", kwlist,
	                                 PyUnicode_FSConverter, &path, &size, &idobj,
	                                 PyUnicode_FSConverter, &mount, &block_size, &numa, &link))
		goto fail;
	uint8_t id[16];
	if (size <= 0 || block_size < 0) {
		cfspy_oserror(EINVAL);
		goto fail;
	}
	if (cfspy_parse_id(idobj, id) < 0)
		goto fail;
	v = cfspy_iov_alloc();
	if (!v)
		goto fail;
	fd = open(PyBytes_AS_STRING(path), O_RDWR | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		cfspy_oserror_path(errno, path);
		goto fail;
	}
	if (st.st_size < size) {
		cfspy_oserror(EINVAL);
		goto fail;
	}
	void *m = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		cfspy_oserror(errno);
		goto fail;
	}
	close(fd);
	fd = -1;
	v->mem = CFSPY_MEM_MMAP;
	v->map = m;
	v->map_len = (size_t)size;
	if (cfspy_iov_wrap(v, m, (size_t)size, id, PyBytes_AS_STRING(mount), (size_t)block_size,
	                   numa) < 0)
		goto fail;
	if (link != Py_None) {
		PyObject *lb = NULL;
		if (!PyUnicode_FSConverter(link, &lb))
			goto fail;
		size_t n = (size_t)PyBytes_GET_SIZE(lb) + 1;
		v->link = PyMem_Malloc(n);
		if (v->link)
			memcpy(v->link, PyBytes_AS_STRING(lb), n);
		Py_DECREF(lb);
		if (!v->link) {
			PyErr_NoMemory();
			goto fail;
		}
	}
	Py_DECREF(path);
	Py_DECREF(mount);
	return (PyObject *)v;
fail:
	if (fd >= 0)
		close(fd);
	Py_XDECREF(v);
	Py_XDECREF(path);
	Py_XDECREF(mount);
	return NULL;
}

/* Releases and drops MV, the memoryview an item access of an iovec went
 * through, leaving the error that access raised (if any) as it was (a
 * failed release must not replace it). */
static void mv_drop(PyObject *mv)
{
	PyObject *t, *e, *tb;
	PyErr_Fetch(&t, &e, &tb);
	PyObject *rel = PyObject_CallMethod(mv, "release", NULL);
	Py_XDECREF(rel);
	PyErr_Clear();
	PyErr_Restore(t, e, tb);
	Py_DECREF(mv);
}

/* iovec.create(mount_point, size, block_size=0, numa=-1): a buffer the
 * library allocates and registers (hf3fs_iovcreate). */
static PyObject *cfspy_iov_create(PyObject *cls, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"mount_point", "size", "block_size", "numa", NULL};
	PyObject *mount;
	Py_ssize_t size, block_size = 0;
	int numa = -1;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O&n|ni:create", kwlist, PyUnicode_FSConverter,
	                                 &mount, &size, &block_size, &numa))
		return NULL;
	cfspy_iov *v = NULL;
	if (size <= 0 || block_size < 0) {
		cfspy_oserror(EINVAL);
		goto fail;
	}
	v = cfspy_iov_alloc();
	if (!v)
		goto fail;
	v->hiov = PyMem_Calloc(1, sizeof(*v->hiov));
	if (!v->hiov) {
		PyErr_NoMemory();
		goto fail;
	}
	int rc;
	const char *mp = PyBytes_AS_STRING(mount);
	PyThreadState *ts = PyEval_SaveThread();
	rc = hf3fs_iovcreate(v->hiov, mp, (size_t)size, (size_t)block_size, numa);
	PyEval_RestoreThread(ts);
	if (rc < 0) {
		PyMem_Free(v->hiov);
		v->hiov = NULL;
		cfspy_oserror(-rc);
		goto fail;
	}
	v->mem = CFSPY_MEM_LIB;
	v->ptr = v->hiov->base;
	v->size = v->hiov->size;
	Py_DECREF(mount);
	return (PyObject *)v;
fail:
	Py_XDECREF(v);
	Py_DECREF(mount);
	return NULL;
}

static int cfspy_iov_getbuffer(cfspy_iov *v, Py_buffer *view, int flags)
{
	if (!cfspy_iov_root(v)->hiov) {
		PyErr_SetString(PyExc_ValueError, "operation on a closed iovec");
		view->obj = NULL;
		return -1;
	}
	return PyBuffer_FillInfo(view, (PyObject *)v, v->ptr, (Py_ssize_t)v->size, 0, flags);
}

static PyBufferProcs cfspy_iov_as_buffer = {
    .bf_getbuffer = (getbufferproc)cfspy_iov_getbuffer,
};

static Py_ssize_t cfspy_iov_len(cfspy_iov *v)
{
	return (Py_ssize_t)v->size;
}

static PyObject *cfspy_iov_subscript(cfspy_iov *v, PyObject *key)
{
	if (PySlice_Check(key)) {
		Py_ssize_t start, stop, step, n;
		if (PySlice_GetIndicesEx(key, (Py_ssize_t)v->size, &start, &stop, &step, &n) < 0)
			return NULL;
		if (step != 1) {
			PyErr_SetString(PyExc_ValueError, "step not 1 when slicing iovec");
			return NULL;
		}
		return (PyObject *)cfspy_iov_sub(cfspy_iov_root(v), v->ptr + start, (size_t)n);
	}
	/* An index (and anything else) behaves as on a memoryview. */
	PyObject *mv = PyMemoryView_FromObject((PyObject *)v);
	if (!mv)
		return NULL;
	PyObject *r = PyObject_GetItem(mv, key);
	mv_drop(mv);
	return r;
}

/* iov[a:b] = data and iov[i] = byte: copies into the buffer, with
 * memoryview's rules (same length, no resizing). */
static int cfspy_iov_ass_subscript(cfspy_iov *v, PyObject *key, PyObject *val)
{
	if (!val) {
		PyErr_SetString(PyExc_TypeError, "cannot delete iovec items");
		return -1;
	}
	PyObject *mv = PyMemoryView_FromObject((PyObject *)v);
	if (!mv)
		return -1;
	int rc = PyObject_SetItem(mv, key, val);
	mv_drop(mv);
	return rc;
}

static PyMappingMethods cfspy_iov_as_mapping = {
    .mp_length = (lenfunc)cfspy_iov_len,
    .mp_subscript = (binaryfunc)cfspy_iov_subscript,
    .mp_ass_subscript = (objobjargproc)cfspy_iov_ass_subscript,
};

/* iov.slice_by(buf): the sub-iovec whose range is BUF's memory, which must
 * lie inside this iovec (3FS's slice_by). */
static PyObject *cfspy_iov_slice_by(cfspy_iov *v, PyObject *buf)
{
	Py_buffer b;
	if (PyObject_GetBuffer(buf, &b, PyBUF_C_CONTIGUOUS) < 0)
		return NULL;
	uint8_t *p = b.buf;
	size_t n = (size_t)b.len;
	PyBuffer_Release(&b);
	if (p < v->ptr || n > v->size || (size_t)(p - v->ptr) > v->size - n) {
		PyErr_SetString(PyExc_IndexError, "given buf is out of range");
		return NULL;
	}
	return (PyObject *)cfspy_iov_sub(cfspy_iov_root(v), p, n);
}

static PyObject *cfspy_iov_get_result(cfspy_iov *v, void *c)
{
	return PyLong_FromLongLong(v->result);
}

static PyObject *cfspy_iov_get_userdata(cfspy_iov *v, void *c)
{
	PyObject *u = v->userdata ? v->userdata : Py_None;
	Py_INCREF(u);
	return u;
}

static PyObject *cfspy_iov_get_base_off(cfspy_iov *v, void *c)
{
	return PyLong_FromSize_t((size_t)(v->ptr - cfspy_iov_root(v)->ptr));
}

static PyObject *cfspy_iov_get_size(cfspy_iov *v, void *c)
{
	return PyLong_FromSize_t(v->size);
}

static PyObject *cfspy_iov_get_id(cfspy_iov *v, void *c)
{
	cfspy_iov *r = cfspy_iov_root(v);
	if (!r->hiov)
		Py_RETURN_NONE;
	return PyBytes_FromStringAndSize((const char *)r->hiov->id, 16);
}

static PyObject *cfspy_iov_get_mount(cfspy_iov *v, void *c)
{
	cfspy_iov *r = cfspy_iov_root(v);
	if (!r->hiov)
		Py_RETURN_NONE;
	return PyUnicode_DecodeFSDefault(r->hiov->mount_point);
}

static PyObject *cfspy_iov_get_block_size(cfspy_iov *v, void *c)
{
	cfspy_iov *r = cfspy_iov_root(v);
	return PyLong_FromSize_t(r->hiov ? r->hiov->block_size : 0);
}

static PyGetSetDef cfspy_iov_getset[] = {
    {"result", (getter)cfspy_iov_get_result, NULL,
     "Result of the last completed I/O on this iovec: bytes done (short at EOF or a hole), or "
     "-errno.",
     NULL},
    {"userdata", (getter)cfspy_iov_get_userdata, NULL,
     "The userdata given to prepare() for the last completed I/O.", NULL},
    {"base_off", (getter)cfspy_iov_get_base_off, NULL,
     "Offset of this range in the registered buffer.", NULL},
    {"size", (getter)cfspy_iov_get_size, NULL, "Bytes in this range.", NULL},
    {"id", (getter)cfspy_iov_get_id, NULL, "16-byte id of the registered buffer.", NULL},
    {"mount_point", (getter)cfspy_iov_get_mount, NULL, "Mount point the buffer serves.", NULL},
    {"block_size", (getter)cfspy_iov_get_block_size, NULL, "Block size given at creation.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef cfspy_iov_methods[] = {
    {"slice_by", (PyCFunction)cfspy_iov_slice_by, METH_O,
     "slice_by(buf) -> iovec: the range of this iovec that BUF's memory covers."},
    {"create", (PyCFunction)(void (*)(void))cfspy_iov_create,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "iovec.create(mount_point, size, block_size=0, numa=-1) -> iovec: a buffer allocated and "
     "registered by the library (hf3fs_iovcreate)."},
    {NULL, NULL, 0, NULL},
};

static PyObject *cfspy_iov_repr(cfspy_iov *v)
{
	return PyUnicode_FromFormat("<chainfs.iovec off=%zu size=%zu result=%lld>",
	                            (size_t)(v->ptr - cfspy_iov_root(v)->ptr), v->size,
	                            (long long)v->result);
}

static PyTypeObject cfspy_iov_type = {
    .ob_base = {PyObject_HEAD_INIT(NULL) 0},
    .tp_name = "chainfs._chainfs.iovec",
    .tp_basicsize = sizeof(cfspy_iov),
    .tp_dealloc = (destructor)cfspy_iov_dealloc,
    .tp_repr = (reprfunc)cfspy_iov_repr,
    .tp_as_mapping = &cfspy_iov_as_mapping,
    .tp_as_buffer = &cfspy_iov_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A range of a buffer registered with a ChainFS mount for ring I/O.\n"
              "Supports the buffer protocol (memoryview(iov), bytes(iov)) and slicing\n"
              "(iov[a:b] is a sub-iovec sharing the memory).",
    .tp_methods = cfspy_iov_methods,
    .tp_getset = cfspy_iov_getset,
    .tp_new = cfspy_iov_new,
};

/* ---------------------------------------------------------------- ioring */

static int cfspy_timeout_ms(PyObject *o, int *ms)
{
	if (o == Py_None) {
		*ms = 0;
		return 0;
	}
	if (PyDelta_Check(o)) {
		long long us = (long long)PyDateTime_DELTA_GET_DAYS(o) * 86400000000LL +
		               (long long)PyDateTime_DELTA_GET_SECONDS(o) * 1000000LL +
		               PyDateTime_DELTA_GET_MICROSECONDS(o);
		if (us < 0 || us / 1000 > INT_MAX) {
			PyErr_SetString(PyExc_ValueError, "timeout out of range");
			return -1;
		}
		*ms = (int)(us / 1000);
		return 0;
	}
	long v = PyLong_AsLong(o);
	if (v == -1 && PyErr_Occurred())
		return -1;
	if (v < 0 || v > INT_MAX) {
		PyErr_SetString(PyExc_ValueError, "timeout must be >= 0 milliseconds");
		return -1;
	}
	*ms = (int)v;
	return 0;
}

/* ioring(hf3fs_mount_point, entries, for_read=True, io_depth=0,
 *        priority=None, timeout=None, numa=-1, flags=0)
 * TIMEOUT is in milliseconds (an int, as 3FS takes it) or a timedelta.
 * PRIORITY: 3FS's Python binding accepts and ignores it, because
 * hf3fs_iorcreate4 (the only call with flags) has no priority. We pass a
 * non-zero priority through hf3fs_iorcreate3 when FLAGS is 0, and ignore it
 * as 3FS does when flags are given. */
static PyObject *cfspy_ior_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"hf3fs_mount_point", "entries", "for_read", "io_depth", "priority",
	                         "timeout",           "numa",    "flags",    NULL};
	PyObject *mount, *prio_obj = Py_None, *to_obj = Py_None;
	int entries, for_read = 1, io_depth = 0, numa = -1;
	unsigned long long flags = 0;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O&i|piOOiK:ioring", kwlist,
	                                 PyUnicode_FSConverter, &mount, &entries, &for_read,
	                                 &io_depth, &prio_obj, &to_obj, &numa, &flags))
		return NULL;
	cfspy_ior *r = NULL;
	int timeout = 0, prio = 0;
	if (cfspy_timeout_ms(to_obj, &timeout) < 0)
		goto fail;
	if (prio_obj != Py_None) {
		long p = PyLong_AsLong(prio_obj);
		if (p == -1 && PyErr_Occurred())
			goto fail;
		prio = p < 0 ? -1 : p > 0 ? 1 : 0;
	}
	if (entries <= 0) {
		cfspy_oserror(EINVAL);
		goto fail;
	}
	r = (cfspy_ior *)type->tp_alloc(type, 0);
	if (!r)
		goto fail;
	r->pending = PyDict_New();
	r->ready = PyList_New(0);
	r->ior = PyMem_Calloc(1, sizeof(*r->ior));
	r->wait_lock = PyThread_allocate_lock();
	if (!r->pending || !r->ready || !r->ior || !r->wait_lock) {
		if (!PyErr_Occurred())
			PyErr_NoMemory();
		PyMem_Free(r->ior);
		r->ior = NULL;
		goto fail;
	}
	int rc;
	const char *mp = PyBytes_AS_STRING(mount);
	PyThreadState *ts = PyEval_SaveThread();
	if (prio != 0 && flags == 0)
		rc = hf3fs_iorcreate3(r->ior, mp, entries, for_read, io_depth, prio, timeout, numa);
	else
		rc = hf3fs_iorcreate4(r->ior, mp, entries, for_read, io_depth, timeout, numa,
		                      (uint64_t)flags);
	PyEval_RestoreThread(ts);
	if (rc < 0) {
		PyMem_Free(r->ior);
		r->ior = NULL;
		cfspy_oserror(-rc);
		goto fail;
	}
	r->entries = hf3fs_io_entries(r->ior);
	r->for_read = for_read;
	r->next_token = 1;
	r->owner = getpid();
	Py_DECREF(mount);
	return (PyObject *)r;
fail:
	Py_XDECREF(r);
	Py_DECREF(mount);
	return NULL;
}

/* Drops every pending request's references (after the ring is gone, the
 * daemon no longer touches their memory through it). */
static void cfspy_ior_drop_pending(cfspy_ior *r)
{
	if (!r->pending)
		return;
	PyObject *k, *val;
	Py_ssize_t pos = 0;
	while (PyDict_Next(r->pending, &pos, &k, &val)) {
		cfspy_iov *v = (cfspy_iov *)PyTuple_GET_ITEM(val, 0);
		v->pending--;
	}
	PyDict_Clear(r->pending);
}

static void cfspy_ior_destroy_now(cfspy_ior *r)
{
	if (r->ior) {
		if (r->owner == getpid()) /* else: the parent's ring, see Fork */
			hf3fs_iordestroy(r->ior);
		PyMem_Free(r->ior);
		r->ior = NULL;
	}
	cfspy_ior_drop_pending(r);
}

static void cfspy_ior_dealloc(cfspy_ior *r)
{
	cfspy_ior_destroy_now(r);
	Py_CLEAR(r->pending);
	Py_CLEAR(r->ready);
	if (r->wait_lock)
		PyThread_free_lock(r->wait_lock);
	Py_TYPE(r)->tp_free((PyObject *)r);
}

static int cfspy_ior_check(cfspy_ior *r)
{
	if (!r->ior) {
		PyErr_SetString(PyExc_ValueError, "operation on a destroyed ioring");
		return -1;
	}
	if (r->owner != getpid()) {
		PyObject *args = Py_BuildValue(
		    "(is)", EBADF, "ioring of another process (make a new one after fork)");
		if (args) {
			PyErr_SetObject(PyExc_OSError, args);
			Py_DECREF(args);
		}
		return -1;
	}
	return 0;
}

/* prepare(iov, read, fd, off, userdata=None) -> self
 * Queues one I/O of len(iov) bytes between IOV's memory and FD at OFF
 * (keyword `offset` is accepted for `off`). IOV and USERDATA are kept
 * alive until wait() returns the completion. Preparing an iovec that is
 * already in flight uses a fresh alias of the same range, so each
 * completion has its own result. */
static PyObject *cfspy_ior_prepare(cfspy_ior *r, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"iov", "read", "fd", "off", "userdata", "offset", NULL};
	PyObject *iovobj, *offobj = NULL, *ud = Py_None, *offkw = NULL;
	int read, fd;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "Opi|OO$O:prepare", kwlist, &iovobj, &read, &fd,
	                                 &offobj, &ud, &offkw))
		return NULL;
	if (cfspy_ior_check(r) < 0)
		return NULL;
	if (!PyObject_TypeCheck(iovobj, &cfspy_iov_type)) {
		PyErr_Format(PyExc_TypeError, "iov must be an iovec, not %.100s",
		             Py_TYPE(iovobj)->tp_name);
		return NULL;
	}
	if (!offobj == !offkw) {
		PyErr_SetString(PyExc_TypeError,
		                "prepare() takes the offset once, as off or offset");
		return NULL;
	}
	long long off = PyLong_AsLongLong(offobj ? offobj : offkw);
	if (off == -1 && PyErr_Occurred())
		return NULL;
	if (off < 0)
		return cfspy_oserror(EINVAL);
	cfspy_iov *v = (cfspy_iov *)iovobj;
	cfspy_iov *root = cfspy_iov_root(v);
	if (!root->hiov)
		return cfspy_oserror(EBADF); /* a closed buffer */
	cfspy_iov *use = v;
	Py_INCREF(use);
	if (v->pending) {
		Py_DECREF(use);
		use = cfspy_iov_sub(root, v->ptr, v->size);
		if (!use)
			return NULL;
	}
	PyObject *token = PyLong_FromUnsignedLongLong(r->next_token);
	PyObject *entry = token ? PyTuple_Pack(2, (PyObject *)use, ud) : NULL;
	if (!entry || PyDict_SetItem(r->pending, token, entry) < 0)
		goto fail;
	int idx = hf3fs_prep_io(r->ior, root->hiov, read, use->ptr, fd, (size_t)off, use->size,
	                        (const void *)(uintptr_t)r->next_token);
	if (idx < 0) {
		PyDict_DelItem(r->pending, token);
		cfspy_oserror(-idx);
		goto fail;
	}
	r->next_token++;
	use->pending++;
	Py_DECREF(entry);
	Py_DECREF(token);
	Py_DECREF(use);
	Py_INCREF(r);
	return (PyObject *)r;
fail:
	Py_XDECREF(entry);
	Py_XDECREF(token);
	Py_DECREF(use);
	return NULL;
}

/* submit() -> self: tells the mount new I/Os are prepared (a hint: the
 * mount also polls). */
static PyObject *cfspy_ior_submit(cfspy_ior *r, PyObject *unused)
{
	if (cfspy_ior_check(r) < 0)
		return NULL;
	/* With the GIL held: a sem_post does not block, and it keeps submit
	 * serialised with prepare() as the C contract asks. */
	int rc = hf3fs_submit_ios(r->ior);
	if (rc < 0)
		return cfspy_oserror(-rc);
	Py_INCREF(r);
	return (PyObject *)r;
}

static void ts_add_ns(struct timespec *ts, long long ns)
{
	long long t = ts->tv_nsec + ns;
	ts->tv_sec += t / 1000000000LL;
	ts->tv_nsec = t % 1000000000LL;
}

static int ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Timeout for wait(): None (forever), a timedelta, or seconds (int or
 * float). Sets *has and *ns. */
static int cfspy_wait_timeout(PyObject *o, int *has, long long *ns)
{
	*has = 0;
	*ns = 0;
	if (!o || o == Py_None)
		return 0;
	*has = 1;
	if (PyDelta_Check(o)) {
		long long us = (long long)PyDateTime_DELTA_GET_DAYS(o) * 86400000000LL +
		               (long long)PyDateTime_DELTA_GET_SECONDS(o) * 1000000LL +
		               PyDateTime_DELTA_GET_MICROSECONDS(o);
		*ns = us < 0 ? 0 : us * 1000;
		return 0;
	}
	double s = PyFloat_AsDouble(o);
	if (s == -1.0 && PyErr_Occurred()) {
		PyErr_SetString(PyExc_TypeError, "timeout must be None, a timedelta or seconds");
		return -1;
	}
	*ns = s <= 0 ? 0 : s > 1e9 ? (long long)1e18 : (long long)(s * 1e9);
	return 0;
}

/* Turns harvested cqes into finished iovecs appended to OUT. */
static int cfspy_ior_reap(cfspy_ior *r, const struct hf3fs_cqe *cqes, int n, PyObject *out)
{
	for (int i = 0; i < n; i++) {
		PyObject *token =
		    PyLong_FromUnsignedLongLong((uint64_t)(uintptr_t)cqes[i].userdata);
		if (!token)
			return -1;
		PyObject *entry = PyDict_GetItemWithError(r->pending, token);
		if (!entry) {
			Py_DECREF(token);
			if (PyErr_Occurred())
				return -1;
			r->stray_cqes++;
			continue;
		}
		Py_INCREF(entry);
		PyDict_DelItem(r->pending, token);
		Py_DECREF(token);
		cfspy_iov *v = (cfspy_iov *)PyTuple_GET_ITEM(entry, 0);
		PyObject *ud = PyTuple_GET_ITEM(entry, 1);
		v->pending--;
		v->result = cqes[i].result;
		Py_INCREF(ud);
		Py_XSETREF(v->userdata, ud);
		int rc = PyList_Append(out, (PyObject *)v);
		Py_DECREF(entry);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* wait(max_results=0, min_results=0, timeout=None) -> [iovec]
 * Returns finished iovecs (each with .result and .userdata): at least
 * MIN_RESULTS unless TIMEOUT (a timedelta, or seconds) passes first, and
 * at most max(MAX_RESULTS, MIN_RESULTS), or 1 when both are 0 (3FS's
 * rule). Once MIN_RESULTS are in it only takes what is already there.
 * The GIL is released while blocking. */
static PyObject *cfspy_ior_wait_locked(cfspy_ior *r, struct hf3fs_cqe *cqes, int cap,
                                       int min_results, int has_to,
                                       const struct timespec *deadline);

static PyObject *cfspy_ior_wait(cfspy_ior *r, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"max_results", "min_results", "timeout", NULL};
	int max_results = 0, min_results = 0;
	PyObject *to_obj = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|iiO:wait", kwlist, &max_results, &min_results,
	                                 &to_obj))
		return NULL;
	if (cfspy_ior_check(r) < 0)
		return NULL;
	int has_to;
	long long to_ns;
	if (cfspy_wait_timeout(to_obj, &has_to, &to_ns) < 0)
		return NULL;
	if (min_results < 0 || max_results < 0)
		return cfspy_oserror(EINVAL);
	if (max_results < min_results)
		max_results = min_results;
	int cap = max_results > 0 ? max_results : min_results > 0 ? min_results : 1;
	struct hf3fs_cqe *cqes = PyMem_Malloc(sizeof(*cqes) * (size_t)cap);
	if (!cqes)
		return PyErr_NoMemory();
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	if (has_to)
		ts_add_ns(&deadline, to_ns);
	/* One waiter at a time; the others queue here without the GIL, for no
	 * longer than their own timeout. */
	r->waiters++;
	PyLockStatus st = PyThread_acquire_lock_timed(r->wait_lock, 0, 0);
	if (st != PY_LOCK_ACQUIRED) {
		PY_TIMEOUT_T us = has_to ? (PY_TIMEOUT_T)(to_ns / 1000) : -1;
		PyThreadState *ts = PyEval_SaveThread();
		st = PyThread_acquire_lock_timed(r->wait_lock, us, 0);
		PyEval_RestoreThread(ts);
	}
	PyObject *out;
	if (st == PY_LOCK_ACQUIRED) {
		out = cfspy_ior_wait_locked(r, cqes, cap, min_results, has_to, &deadline);
		PyThread_release_lock(r->wait_lock);
	} else {
		out = PyList_New(0); /* timed out behind another waiter */
	}
	r->waiters--;
	PyMem_Free(cqes);
	return out;
}

/* wait() with the ring's wait_lock held and r->waiters counting us. */
static PyObject *cfspy_ior_wait_locked(cfspy_ior *r, struct hf3fs_cqe *cqes, int cap,
                                       int min_results, int has_to, const struct timespec *deadline)
{
	struct timespec now;
	PyObject *out = PyList_New(0);
	if (!out)
		return NULL;
	/* Completions a previous, interrupted wait harvested come first. */
	Py_ssize_t nready = PyList_GET_SIZE(r->ready);
	if (nready > 0) {
		Py_ssize_t take = nready < cap ? nready : cap;
		PyObject *head = PyList_GetSlice(r->ready, 0, take);
		if (!head || PyList_SetSlice(out, 0, 0, head) < 0 ||
		    PyList_SetSlice(r->ready, 0, take, NULL) < 0) {
			Py_XDECREF(head);
			Py_DECREF(out);
			return NULL;
		}
		Py_DECREF(head);
	}
	for (;;) {
		int got = (int)PyList_GET_SIZE(out);
		if (got >= cap)
			break;
		int want = cap - got;
		int need = min_results - got > 0 ? min_results - got : 0;
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &now);
		if (need == 0) {
			until = now; /* only what is already there */
		} else {
			until = now;
			ts_add_ns(&until, CFSPY_WAIT_SLICE_NS);
			if (has_to && ts_before(deadline, &until))
				until = *deadline;
		}
		int n;
		struct hf3fs_ior *ior = r->ior;
		PyThreadState *ts = PyEval_SaveThread();
		n = hf3fs_wait_for_ios(ior, cqes, want, need, &until);
		PyEval_RestoreThread(ts);
		if (n < 0) {
			if (got == 0) {
				Py_DECREF(out);
				return cfspy_oserror(-n);
			}
			break; /* keep what we have */
		}
		if (cfspy_ior_reap(r, cqes, n, out) < 0)
			goto fail;
		if (need == 0) {
			if (n == 0)
				break;
			continue;
		}
		if (n >= need)
			continue; /* min reached: top up with what is ready */
		clock_gettime(CLOCK_REALTIME, &now);
		if (has_to && !ts_before(&now, deadline))
			break;
		if (PyErr_CheckSignals() < 0)
			goto fail;
	}
	return out;
fail:
	/* Nothing harvested is lost: the next wait() returns it. */
	{
		PyObject *t, *e, *tb;
		PyErr_Fetch(&t, &e, &tb);
		PyList_SetSlice(r->ready, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX, out);
		PyErr_Restore(t, e, tb);
	}
	Py_DECREF(out);
	return NULL;
}

/* destroy(): releases the ring now; in-flight requests are forgotten. */
static PyObject *cfspy_ior_destroy(cfspy_ior *r, PyObject *unused)
{
	if (r->waiters > 0)
		return cfspy_oserror(EBUSY);
	cfspy_ior_destroy_now(r);
	Py_RETURN_NONE;
}

static PyObject *cfspy_ior_size_for_entries(PyObject *cls, PyObject *arg)
{
	int entries = PyLong_AsLong(arg);
	if (entries == -1 && PyErr_Occurred())
		return NULL;
	return PyLong_FromSize_t(hf3fs_ior_size(entries));
}

static PyObject *cfspy_ior_get_entries(cfspy_ior *r, void *c)
{
	return PyLong_FromLong(r->entries);
}

static PyObject *cfspy_ior_get_in_flight(cfspy_ior *r, void *c)
{
	Py_ssize_t n = r->pending ? PyDict_GET_SIZE(r->pending) : 0;
	return PyLong_FromSsize_t(n + (r->ready ? PyList_GET_SIZE(r->ready) : 0));
}

static PyObject *cfspy_ior_get_for_read(cfspy_ior *r, void *c)
{
	return PyBool_FromLong(r->for_read);
}

static PyObject *cfspy_ior_get_stray(cfspy_ior *r, void *c)
{
	return PyLong_FromUnsignedLongLong(r->stray_cqes);
}

static PyGetSetDef cfspy_ior_getset[] = {
    {"entries", (getter)cfspy_ior_get_entries, NULL, "Slots in the ring.", NULL},
    {"in_flight", (getter)cfspy_ior_get_in_flight, NULL,
     "Prepared I/Os whose completion wait() has not returned yet.", NULL},
    {"for_read", (getter)cfspy_ior_get_for_read, NULL, "True for a read ring.", NULL},
    {"stray_completions", (getter)cfspy_ior_get_stray, NULL,
     "Completions that matched no prepared I/O (dropped; should stay 0).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef cfspy_ior_methods[] = {
    {"prepare", (PyCFunction)(void (*)(void))cfspy_ior_prepare, METH_VARARGS | METH_KEYWORDS,
     "prepare(iov, read, fd, off, userdata=None) -> self"},
    {"submit", (PyCFunction)cfspy_ior_submit, METH_NOARGS, "submit() -> self"},
    {"wait", (PyCFunction)(void (*)(void))cfspy_ior_wait, METH_VARARGS | METH_KEYWORDS,
     "wait(max_results=0, min_results=0, timeout=None) -> list of finished iovecs"},
    {"destroy", (PyCFunction)cfspy_ior_destroy, METH_NOARGS, "destroy(): release the ring now"},
    {"size_for_entries", (PyCFunction)cfspy_ior_size_for_entries, METH_O | METH_STATIC,
     "size_for_entries(entries) -> bytes of shared memory a ring of ENTRIES needs"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject cfspy_ior_type = {
    .ob_base = {PyObject_HEAD_INIT(NULL) 0},
    .tp_name = "chainfs._chainfs.ioring",
    .tp_basicsize = sizeof(cfspy_ior),
    .tp_dealloc = (destructor)cfspy_ior_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A USRBIO submission/completion ring served by a ChainFS mount.",
    .tp_methods = cfspy_ior_methods,
    .tp_getset = cfspy_ior_getset,
    .tp_new = cfspy_ior_new,
};

/* ---------------------------------------------------------------- module */

/* extract_mount_point(path) -> str or None (None: not on a mount). */
static PyObject *cfspy_extract_mount_point(PyObject *m, PyObject *arg)
{
	PyObject *path;
	if (!PyUnicode_FSConverter(arg, &path))
		return NULL;
	char mp[4096];
	int rc;
	const char *p = PyBytes_AS_STRING(path);
	PyThreadState *ts = PyEval_SaveThread();
	rc = hf3fs_extract_mount_point(mp, (int)sizeof(mp), p);
	PyEval_RestoreThread(ts);
	Py_DECREF(path);
	if (rc < 0)
		Py_RETURN_NONE;
	if (rc > (int)sizeof(mp))
		return cfspy_oserror(ENAMETOOLONG);
	return PyUnicode_DecodeFSDefault(mp);
}

/* register_fd(fd, flags=0): hf3fs_reg_fd returns <= 0 on success and a
 * positive errno on failure. */
static PyObject *cfspy_register_fd(PyObject *m, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"fd", "flags", NULL};
	int fd;
	unsigned long long flags = 0;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "i|K:register_fd", kwlist, &fd, &flags))
		return NULL;
	int rc;
	PyThreadState *ts = PyEval_SaveThread();
	rc = hf3fs_reg_fd(fd, (uint64_t)flags);
	PyEval_RestoreThread(ts);
	if (rc > 0)
		return cfspy_oserror(rc);
	Py_RETURN_NONE;
}

static PyObject *cfspy_deregister_fd(PyObject *m, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"fd", NULL};
	int fd;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "i:deregister_fd", kwlist, &fd))
		return NULL;
	/* An ioctl through the mount (it also reports the length rings wrote). */
	PyThreadState *ts = PyEval_SaveThread();
	hf3fs_dereg_fd(fd);
	PyEval_RestoreThread(ts);
	Py_RETURN_NONE;
}

static PyObject *cfspy_is_hf3fs(PyObject *m, PyObject *arg)
{
	int fd = PyObject_AsFileDescriptor(arg);
	if (fd < 0)
		return NULL;
	return PyBool_FromLong(hf3fs_is_hf3fs(fd));
}

/* punch_hole(fd, start, end, flags=0): frees [start[i], end[i]) of the file
 * with fallocate(PUNCH_HOLE); EOPNOTSUPP where the file system has no
 * punch-hole support. */
static PyObject *cfspy_punch_hole(PyObject *m, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"fd", "start", "end", "flags", NULL};
	PyObject *fdobj, *starts, *ends;
	unsigned long long flags = 0;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|K:punch_hole", kwlist, &fdobj, &starts,
	                                 &ends, &flags))
		return NULL;
	int fd = -1, opened = 0;
	if (PyLong_Check(fdobj)) {
		fd = (int)PyLong_AsLong(fdobj);
		if (fd == -1 && PyErr_Occurred())
			return NULL;
	} else {
		PyObject *p;
		if (!PyUnicode_FSConverter(fdobj, &p))
			return NULL;
		fd = open(PyBytes_AS_STRING(p), O_RDWR | O_CLOEXEC);
		Py_DECREF(p);
		if (fd < 0)
			return cfspy_oserror(errno);
		opened = 1;
	}
	PyObject *res = NULL;
	Py_ssize_t n = PySequence_Size(starts);
	if (n < 0 || PySequence_Size(ends) != n) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_ValueError, "start and end differ in length");
		goto out;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *a = PySequence_GetItem(starts, i), *b = PySequence_GetItem(ends, i);
		long long s = a ? PyLong_AsLongLong(a) : -1, e = b ? PyLong_AsLongLong(b) : -1;
		Py_XDECREF(a);
		Py_XDECREF(b);
		if (PyErr_Occurred())
			goto out;
		if (s < 0 || e < s) {
			cfspy_oserror(EINVAL);
			goto out;
		}
		if (e == s)
			continue;
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, s, e - s) < 0) {
			cfspy_oserror(errno);
			goto out;
		}
	}
	res = Py_None;
	Py_INCREF(res);
out:
	if (opened)
		close(fd);
	return res;
}

static PyMethodDef cfspy_methods[] = {
    {"extract_mount_point", cfspy_extract_mount_point, METH_O,
     "extract_mount_point(path) -> mount point of the ChainFS mount holding PATH, or None"},
    {"register_fd", (PyCFunction)(void (*)(void))cfspy_register_fd, METH_VARARGS | METH_KEYWORDS,
     "register_fd(fd, flags=0): allow ring I/O on FD (OSError on failure)"},
    {"deregister_fd", (PyCFunction)(void (*)(void))cfspy_deregister_fd,
     METH_VARARGS | METH_KEYWORDS, "deregister_fd(fd): forget a registration (before close)"},
    {"is_hf3fs", cfspy_is_hf3fs, METH_O, "is_hf3fs(fd) -> True when FD is on a ChainFS mount"},
    {"punch_hole", (PyCFunction)(void (*)(void))cfspy_punch_hole, METH_VARARGS | METH_KEYWORDS,
     "punch_hole(fd_or_path, start, end, flags=0): deallocate ranges"},
    {"_iovec_from_shm", (PyCFunction)(void (*)(void))cfspy_iov_from_shm,
     METH_VARARGS | METH_KEYWORDS,
     "_iovec_from_shm(path, size, id, mount, block_size=0, numa=-1, link=None) -> iovec"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cfspy_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "chainfs._chainfs",
    .m_doc = "ChainFS USRBIO rings and registered buffers (C part of the chainfs package).",
    .m_size = -1,
    .m_methods = cfspy_methods,
};

PyMODINIT_FUNC PyInit__chainfs(void)
{
	PyDateTime_IMPORT;
	if (!PyDateTimeAPI)
		return NULL;
	if (PyType_Ready(&cfspy_iov_type) < 0 || PyType_Ready(&cfspy_ior_type) < 0)
		return NULL;
	PyObject *m = PyModule_Create(&cfspy_module);
	if (!m)
		return NULL;
	Py_INCREF(&cfspy_iov_type);
	Py_INCREF(&cfspy_ior_type);
	if (PyModule_AddObject(m, "iovec", (PyObject *)&cfspy_iov_type) < 0 ||
	    PyModule_AddObject(m, "ioring", (PyObject *)&cfspy_ior_type) < 0 ||
	    PyModule_AddIntConstant(m, "IOR_ALLOW_READ_UNCOMMITTED",
	                            HF3FS_IOR_ALLOW_READ_UNCOMMITTED) < 0 ||
	    PyModule_AddIntConstant(m, "IOR_FORBID_READ_HOLES", HF3FS_IOR_FORBID_READ_HOLES) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}

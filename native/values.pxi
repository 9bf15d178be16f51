# Included by storage.pyx: moving values between Python objects, cells,
# stored rows and order-preserving key encodings (see storage.pyx's
# docstring for the row and key formats).

# -- values: Python <-> cells <-> rows <-> keys ---------------------------------

cdef int py_to_cell(Table t, int ci, object v, Cell* cell) except -1:
    """Validate ``v`` for column ``ci`` and describe it as a cell. String and
    bytes cells point into ``v``'s own buffer: ``v`` must outlive the cell."""
    cdef ColMeta* c = &t.cols[ci]
    cdef int overflow = 0
    cdef int64_t iv
    cdef double fv
    cdef Py_ssize_t n
    cell.null = False
    if v is None:
        if not c.nullable:
            raise NotNullError(f"{t.name}.{t.all_names[ci]}: NULL is not allowed (the column is NOT NULL)")
        cell.null = True
        return 0
    ty = c.type
    if ty <= T_BIGINT:
        if not PyLong_Check(v) or isinstance(v, bool):
            if isinstance(v, (float, bool)) or not hasattr(v, "__index__"):
                raise TypeMismatchError(f"{t.name}.{t.all_names[ci]}: expected an int for "
                                        f"{ColumnType(ty).name}, got {type(v).__name__} {_short(v)}")
            v = v.__index__()
        iv = PyLong_AsLongLongAndOverflow(v, &overflow)
        if overflow or iv < c.min_int or iv > c.max_int:
            raise ValueOutOfRangeError(f"{t.name}.{t.all_names[ci]}: {_short(v)} is out of range "
                                       f"for {ColumnType(ty).name}")
        cell.i = iv
    elif ty == T_VARCHAR:
        if not PyUnicode_Check(v):
            raise TypeMismatchError(f"{t.name}.{t.all_names[ci]}: expected a str for VARCHAR, "
                                    f"got {type(v).__name__} {_short(v)}")
        cell.p = PyUnicode_AsUTF8AndSize(v, &n)
        cell.n = n
        if c.max_chars >= 0:
            if PyUnicode_GET_LENGTH(v) > c.max_chars:
                raise ValueTooLongError(f"{t.name}.{t.all_names[ci]}: {_short(v)} is "
                                        f"{PyUnicode_GET_LENGTH(v)} characters, longer than "
                                        f"VARCHAR({c.max_chars})")
        elif n > c.capacity:
            raise ValueTooLongError(f"{t.name}.{t.all_names[ci]}: {_short(v)} is {n} bytes, "
                                    f"longer than VARCHAR({c.capacity} BYTES)")
    elif ty == T_FLOAT:
        if PyFloat_Check(v):
            fv = PyFloat_AS_DOUBLE(v)
        elif PyLong_Check(v):
            try:
                fv = float(v)
            except OverflowError:
                raise ValueOutOfRangeError(f"{t.name}.{t.all_names[ci]}: {_short(v)} is out of "
                                           f"range for FLOAT") from None
        else:
            raise TypeMismatchError(f"{t.name}.{t.all_names[ci]}: expected a float for FLOAT, "
                                    f"got {type(v).__name__} {_short(v)}")
        if isnan(fv):
            raise ValueOutOfRangeError(f"{t.name}.{t.all_names[ci]}: NaN is not a valid FLOAT")
        cell.f = fv
    elif ty == T_TIMESTAMP:
        if isinstance(v, bool) or not (PyLong_Check(v) or isinstance(v, _dt.datetime)):
            raise TypeMismatchError(f"{t.name}.{t.all_names[ci]}: expected a datetime or int "
                                    f"microseconds for TIMESTAMP, got {type(v).__name__} {_short(v)}")
        micros = timestamp_to_micros(v)
        iv = PyLong_AsLongLongAndOverflow(micros, &overflow)
        if overflow:
            raise ValueOutOfRangeError(f"{t.name}.{t.all_names[ci]}: {_short(v)} is out of range "
                                       f"for TIMESTAMP")
        cell.i = iv
    elif ty == T_VARBINARY:
        if not PyBytes_Check(v):
            if isinstance(v, (bytearray, memoryview)):
                v = bytes(v)
                t._keep.append(v)
            else:
                raise TypeMismatchError(f"{t.name}.{t.all_names[ci]}: expected bytes for "
                                        f"VARBINARY, got {type(v).__name__} {_short(v)}")
        cell.p = PyBytes_AS_STRING(v)
        cell.n = PyBytes_GET_SIZE(v)
        if cell.n > c.capacity:
            raise ValueTooLongError(f"{t.name}.{t.all_names[ci]}: {_short(v)} is {cell.n} bytes, "
                                    f"longer than VARBINARY({c.capacity})")
    elif ty == T_DECIMAL:
        hi, lo = _decimal_parts(t.name, t.all_names[ci], v)
        cell.dhi = hi
        cell.dlo = lo
    return 0


cdef int cell_to_row(Table t, ColMeta* c, Cell* cell, char* row) except -1:
    """Write a validated cell into a row whose slot for it is empty."""
    cdef char* p = row + c.offset
    cdef char* buf
    cdef uint32_t n32
    if cell.null:
        row[c.null_byte] = row[c.null_byte] | c.null_mask
        memset(p, 0, c.width)
        return 0
    if c.nullable:
        row[c.null_byte] = row[c.null_byte] & ~c.null_mask
    ty = c.type
    if ty <= T_BIGINT or ty == T_TIMESTAMP:
        _write_int(p, c.width, cell.i)
    elif ty == T_VARCHAR or ty == T_VARBINARY:
        if c.inline_value:
            p[0] = <char>cell.n
            memcpy(p + 1, cell.p, cell.n)
            memset(p + 1 + cell.n, 0, c.width - 1 - cell.n)
        else:
            buf = <char*>malloc(4 + cell.n)
            if buf == NULL:
                raise MemoryError()
            n32 = <uint32_t>cell.n
            memcpy(buf, &n32, 4)
            memcpy(buf + 4, cell.p, cell.n)
            memcpy(p, &buf, sizeof(char*))
            t.outline_bytes += 4 + cell.n
    elif ty == T_FLOAT:
        memcpy(p, &cell.f, 8)
    elif ty == T_DECIMAL:
        fs_int128_store(p, cell.dhi, cell.dlo)
    return 0


cdef inline void row_to_cell(ColMeta* c, const char* row, Cell* cell) noexcept:
    cdef const char* p = row + c.offset
    cdef const char* buf
    cdef uint32_t n32
    if c.nullable and (row[c.null_byte] & c.null_mask):
        cell.null = True
        return
    cell.null = False
    ty = c.type
    if ty <= T_BIGINT or ty == T_TIMESTAMP:
        cell.i = _read_int(p, c.width)
    elif ty == T_VARCHAR or ty == T_VARBINARY:
        if c.inline_value:
            cell.n = <uint8_t>p[0]
            cell.p = p + 1
        else:
            memcpy(&buf, p, sizeof(char*))
            memcpy(&n32, buf, 4)
            cell.n = n32
            cell.p = buf + 4
    elif ty == T_FLOAT:
        memcpy(&cell.f, p, 8)
    elif ty == T_DECIMAL:
        cell.dhi = fs_int128_hi(p)
        cell.dlo = fs_int128_lo(p)


cdef object cell_to_py(ColMeta* c, Cell* cell):
    if cell.null:
        return None
    ty = c.type
    if ty <= T_BIGINT:
        return cell.i
    if ty == T_VARCHAR:
        return PyUnicode_DecodeUTF8(cell.p, cell.n, NULL)
    if ty == T_FLOAT:
        return cell.f
    if ty == T_VARBINARY:
        return PyBytes_FromStringAndSize(cell.p, cell.n)
    if ty == T_TIMESTAMP:
        return _timestamp_from_micros(cell.i)
    return _decimal_from_parts(cell.dhi, cell.dlo)


cdef void encode_cell(ColMeta* c, Cell* cell, string* out) noexcept:
    """Append the order-preserving key encoding of a cell (see module doc)."""
    cdef uint64_t u
    cdef Py_ssize_t k
    cdef unsigned char b
    cdef double f
    if cell.null:
        out.push_back(0)
        return
    out.push_back(1)
    ty = c.type
    if ty <= T_BIGINT or ty == T_TIMESTAMP:
        u = <uint64_t>cell.i
        if c.width == 8:
            _put_be(out, u ^ (<uint64_t>1 << 63), 8)
        else:
            _put_be(out, (u ^ (<uint64_t>1 << (8 * c.width - 1))) & ((<uint64_t>1 << (8 * c.width)) - 1), c.width)
    elif ty == T_VARCHAR or ty == T_VARBINARY:
        for k in range(cell.n):
            b = <unsigned char>cell.p[k]
            if b == 0:
                out.push_back(0)
                out.push_back(<char>0xFF)
            else:
                out.push_back(<char>b)
        out.push_back(0)
        out.push_back(0)
    elif ty == T_FLOAT:
        f = cell.f
        if f == 0.0:
            f = 0.0        # -0.0 is stored as given but is the same key as 0.0
        memcpy(&u, &f, 8)
        if u >> 63:
            u = ~u
        else:
            u = u | (<uint64_t>1 << 63)
        _put_be(out, u, 8)
    elif ty == T_DECIMAL:
        _put_be(out, (<uint64_t>cell.dhi) ^ (<uint64_t>1 << 63), 8)
        _put_be(out, cell.dlo, 8)


cdef int cell_cmp(ColMeta* c, Cell* a, Cell* b) noexcept:
    """Compare two non-NULL cells of one column: -1, 0 or 1."""
    cdef int r
    ty = c.type
    if ty <= T_BIGINT or ty == T_TIMESTAMP:
        return (a.i > b.i) - (a.i < b.i)
    if ty == T_FLOAT:
        return (a.f > b.f) - (a.f < b.f)
    if ty == T_DECIMAL:
        if a.dhi != b.dhi:
            return (a.dhi > b.dhi) - (a.dhi < b.dhi)
        return (a.dlo > b.dlo) - (a.dlo < b.dlo)
    r = memcmp(a.p, b.p, a.n if a.n < b.n else b.n)
    if r != 0:
        return 1 if r > 0 else -1
    return (a.n > b.n) - (a.n < b.n)

# Included by storage.pyx: the index kinds. Every index sees rows through
# its key encoding; the table calls add/remove/check_unique around each
# change (see storage.pyx, "Indexes").

# -- indexes ------------------------------------------------------------------

cdef class Index:
    """Base of the index kinds: key encoding shared by all of them."""

    cdef readonly str name
    cdef readonly Table table
    cdef readonly tuple columns
    cdef readonly bint unique
    cdef int* key_cols
    cdef int nkey
    cdef bint nulls_equal       # primary keys and view keys: NULL is a value
    cdef string probe
    cdef string probe2

    def __cinit__(self, Table table, str name, list col_ids, *args):
        cdef int i
        self.table = table
        self.name = name
        self.nkey = len(col_ids)
        self.key_cols = <int*>malloc(self.nkey * sizeof(int))
        for i in range(self.nkey):
            self.key_cols[i] = col_ids[i]
        self.columns = tuple(table.all_names[i] for i in col_ids)

    def __dealloc__(self):
        free(self.key_cols)

    @property
    def ordered(self):
        return False

    cdef bint encode_row(self, const char* row, string* out) noexcept:
        """Encode this index's key of a stored row; True if it holds a NULL."""
        cdef Cell cell
        cdef int i
        cdef bint has_null = False
        out.clear()
        for i in range(self.nkey):
            row_to_cell(&self.table.cols[self.key_cols[i]], row, &cell)
            if cell.null:
                has_null = True
            encode_cell(&self.table.cols[self.key_cols[i]], &cell, out)
        return has_null

    cdef int encode_py(self, object key, string* out, bint allow_prefix) except -1:
        """Encode a key given from Python (bare value or tuple); returns the
        number of columns it covers."""
        cdef Cell cell
        cdef int i, n
        out.clear()
        if self.nkey == 1 and (PyLong_Check(key) or PyUnicode_Check(key)):
            # the common case, without building a tuple
            py_to_cell(self.table, self.key_cols[0], key, &cell)
            encode_cell(&self.table.cols[self.key_cols[0]], &cell, out)
            return 1
        if self.nkey == 1 or not isinstance(key, (tuple, list)):
            values = (key,)
        else:
            values = key
        n = len(values)
        if n > self.nkey or (n < self.nkey and not allow_prefix) or n == 0:
            raise TypeMismatchError(f"index {self.name} of {self.table.name} takes a key of "
                                    f"{self.nkey} value(s) {self.columns}, got {_short(key)}")
        try:
            for i in range(n):
                py_to_cell(self.table, self.key_cols[i], values[i], &cell)
                encode_cell(&self.table.cols[self.key_cols[i]], &cell, out)
        finally:
            if self.table._keep:
                self.table._keep.clear()
        return n

    cdef bint key_changed(self, const char* a, const char* b) noexcept:
        self.encode_row(a, &self.probe)
        self.encode_row(b, &self.probe2)
        return self.probe != self.probe2

    cdef int add(self, uint32_t rowid, const char* row) except -1:
        return 0

    cdef int remove(self, uint32_t rowid, const char* row) except -1:
        return 0

    cdef int check_unique(self, const char* row, uint32_t exclude) except -1:
        return 0

    cdef size_t memory_bytes(self):
        return 0

    # bulk loading (Table.import_rows): the table's rows are in place, the
    # index is empty; add every LIVE row at once
    cdef void clear(self) noexcept:
        pass

    cdef int bulk_build(self) except -1:
        cdef Table t = self.table
        cdef uint32_t r
        for r in range(t.high_water):
            if t.slot_state(r) == SLOT_LIVE:
                if self.unique:
                    self.check_unique(t.slot_row(r), NO_ROW)
                self.add(r, t.slot_row(r))
        return 0

    cdef str describe_key(self, const char* row):
        cdef Cell cell
        values = []
        for i in range(self.nkey):
            row_to_cell(&self.table.cols[self.key_cols[i]], row, &cell)
            values.append(_short(cell_to_py(&self.table.cols[self.key_cols[i]], &cell)))
        what = "primary key" if self.name == "primary_key" else f"unique index {self.name}"
        return (f"{self.table.name}: duplicate key ({', '.join(values)}) on "
                f"({', '.join(self.columns)}) violates the {what}")

    def __len__(self):
        return 0

    def __repr__(self):
        return f"<index {self.name} on {self.table.name}{self.columns}>"

    def get(self, key):
        if not self.unique:
            raise TypeError(f"index {self.name} is not unique: use find()")
        rows = self.find(key)
        return rows[0] if rows else None

    def find(self, key):
        return [self.table.make_row(self.table.slot_row(r)) for r in self.find_rowids(key)]

    def range(self, low=None, high=None, *, bint low_inclusive=True, bint high_inclusive=True,
              bint reverse=False, Py_ssize_t limit=-1):
        cdef Table t = self.table
        return [t.make_row(t.slot_row(r)) for r in self.range_rowids(
            low, high, low_inclusive=low_inclusive, high_inclusive=high_inclusive,
            reverse=reverse, limit=limit)]

    def find_rowids(self, key):
        raise NotImplementedError

    def range_rowids(self, low=None, high=None, **kwargs):
        raise TypeError(f"index {self.name} is a hash index: it has no order to scan; "
                        f"declare an ordered index for range scans")


cdef inline uint32_t _int_tag(int64_t v) noexcept:
    # splitmix64's finalizer: every input bit moves the tag
    cdef uint64_t z = <uint64_t>v + 0x9E3779B97F4A7C15ULL
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    z = z ^ (z >> 31)
    return <uint32_t>(z ^ (z >> 32))


cdef inline int64_t _decode_int_key(const string& key, int width) noexcept:
    """The integer of a one-column integer key encoding (marker + big-endian)."""
    cdef const unsigned char* p = <const unsigned char*>key.data() + 1
    cdef uint64_t u = 0
    cdef int k
    for k in range(width):
        u = (u << 8) | p[k]
    u ^= <uint64_t>1 << (8 * width - 1)
    if width < 8 and (u >> (8 * width - 1)) & 1:
        u |= ~((<uint64_t>1 << (8 * width)) - 1)     # sign-extend
    return <int64_t>u


cdef class HashIndex(Index):
    """Unique hash index: open addressing over (hash tag, row id) slots.

    A key of one NOT NULL integer or TIMESTAMP column (most primary keys)
    takes a fast path that hashes and compares the integer itself instead
    of its encoding; both paths agree on which rows match.
    """

    cdef uint64_t* slots
    cdef size_t capacity
    cdef size_t size
    cdef bint int_key
    cdef int int_offset
    cdef int int_width

    def __cinit__(self, Table table, str name, list col_ids, bint nulls_equal):
        cdef ColMeta* c = &table.cols[<int>col_ids[0]]
        self.unique = True
        self.nulls_equal = nulls_equal
        self.int_key = (len(col_ids) == 1 and not c.nullable
                        and (c.type <= T_BIGINT or c.type == T_TIMESTAMP))
        self.int_offset = c.offset
        self.int_width = c.width
        self.capacity = 16
        self.size = 0
        self.slots = <uint64_t*>malloc(self.capacity * sizeof(uint64_t))
        if self.slots == NULL:
            raise MemoryError()
        memset(self.slots, 0xFF, self.capacity * sizeof(uint64_t))

    def __dealloc__(self):
        free(self.slots)

    def __len__(self):
        return self.size

    cdef size_t memory_bytes(self):
        return self.capacity * sizeof(uint64_t)

    cdef inline uint32_t tag_of(self, const string& key) noexcept:
        cdef uint64_t h
        if self.int_key:
            return _int_tag(_decode_int_key(key, self.int_width))
        h = fs_hash_bytes(key.data(), key.size())
        return <uint32_t>(h ^ (h >> 32))

    cdef inline int64_t row_int(self, const char* row) noexcept:
        return _read_int(row + self.int_offset, self.int_width)

    cdef uint32_t find_int(self, int64_t v) noexcept:
        cdef size_t mask = self.capacity - 1
        cdef uint32_t tag = _int_tag(v)
        cdef size_t i = tag & mask
        cdef uint64_t e
        cdef uint32_t rowid
        while True:
            e = self.slots[i]
            if e == EMPTY_SLOT:
                return NO_ROW
            if <uint32_t>(e >> 32) == tag:
                rowid = <uint32_t>e
                if self.row_int(self.table.slot_row(rowid)) == v:
                    return rowid
            i = (i + 1) & mask

    cdef uint32_t find_key(self, const string& key) noexcept:
        """Row id with exactly this encoded key, or NO_ROW."""
        if self.int_key:
            return self.find_int(_decode_int_key(key, self.int_width))
        cdef uint32_t tag = self.tag_of(key)
        cdef size_t mask = self.capacity - 1
        cdef size_t i = tag & mask
        cdef uint64_t e
        cdef uint32_t rowid
        while True:
            e = self.slots[i]
            if e == EMPTY_SLOT:
                return NO_ROW
            if <uint32_t>(e >> 32) == tag:
                rowid = <uint32_t>e
                self.encode_row(self.table.slot_row(rowid), &self.probe2)
                if self.probe2 == key:
                    return rowid
            i = (i + 1) & mask

    cdef uint32_t lookup(self, object key) except? 0xFFFFFFFE:
        cdef Cell cell
        if self.int_key and PyLong_Check(key):
            py_to_cell(self.table, self.key_cols[0], key, &cell)
            return self.find_int(cell.i)
        self.encode_py(key, &self.probe, False)
        return self.find_key(self.probe)

    cdef uint32_t find_row_key(self, const char* row) noexcept:
        if self.int_key:
            return self.find_int(self.row_int(row))
        self.encode_row(row, &self.probe)
        return self.find_key(self.probe)

    cdef int check_unique(self, const char* row, uint32_t exclude) except -1:
        cdef uint32_t found
        if self.int_key:
            found = self.find_int(self.row_int(row))
        elif self.encode_row(row, &self.probe) and not self.nulls_equal:
            return 0
        else:
            found = self.find_key(self.probe)
        if found != NO_ROW and found != exclude:
            raise UniqueViolationError(self.describe_key(row))
        return 0

    cdef inline bint row_tag(self, const char* row, uint32_t* tag) noexcept:
        """The tag of a row's key; False if the row stays out of the index."""
        if self.int_key:
            tag[0] = _int_tag(self.row_int(row))
            return True
        if self.encode_row(row, &self.probe) and not self.nulls_equal:
            return False
        tag[0] = self.tag_of(self.probe)
        return True

    cdef bint key_changed(self, const char* a, const char* b) noexcept:
        if self.int_key:
            return self.row_int(a) != self.row_int(b)
        return Index.key_changed(self, a, b)

    cdef int add(self, uint32_t rowid, const char* row) except -1:
        cdef uint32_t tag
        if not self.row_tag(row, &tag):
            return 0
        if (self.size + 1) * 4 > self.capacity * 3:
            self.grow()
        cdef size_t mask = self.capacity - 1
        cdef size_t i = tag & mask
        while self.slots[i] != EMPTY_SLOT:
            i = (i + 1) & mask
        self.slots[i] = (<uint64_t>tag << 32) | rowid
        self.size += 1
        return 0

    cdef int grow(self) except -1:
        cdef size_t old_cap = self.capacity
        cdef uint64_t* old = self.slots
        cdef size_t new_cap = old_cap * 2
        cdef uint64_t* slots = <uint64_t*>malloc(new_cap * sizeof(uint64_t))
        cdef size_t i, j, mask = new_cap - 1
        cdef uint64_t e
        if slots == NULL:
            raise MemoryError()
        memset(slots, 0xFF, new_cap * sizeof(uint64_t))
        for i in range(old_cap):
            e = old[i]
            if e != EMPTY_SLOT:
                j = (e >> 32) & mask
                while slots[j] != EMPTY_SLOT:
                    j = (j + 1) & mask
                slots[j] = e
        self.slots = slots
        self.capacity = new_cap
        free(old)
        return 0

    cdef int remove(self, uint32_t rowid, const char* row) except -1:
        cdef uint32_t tag
        if not self.row_tag(row, &tag):
            return 0
        cdef size_t mask = self.capacity - 1
        cdef size_t i = tag & mask
        cdef size_t j, k
        cdef uint64_t want = (<uint64_t>tag << 32) | rowid
        cdef uint64_t e
        while self.slots[i] != want:
            if self.slots[i] == EMPTY_SLOT:
                return 0        # not present: nothing to remove
            i = (i + 1) & mask
        # backward-shift deletion keeps every probe chain unbroken
        j = i
        while True:
            j = (j + 1) & mask
            e = self.slots[j]
            if e == EMPTY_SLOT:
                break
            k = (e >> 32) & mask
            if (i < j and (k <= i or k > j)) or (i > j and k <= i and k > j):
                self.slots[i] = e
                i = j
        self.slots[i] = EMPTY_SLOT
        self.size -= 1
        return 0

    cdef void clear(self) noexcept:
        memset(self.slots, 0xFF, self.capacity * sizeof(uint64_t))
        self.size = 0

    cdef int bulk_build(self) except -1:
        """Size the table once, insert every row's (tag, row id) grouped
        by table region (fs_hash_insert_many), then compare the keys of the
        few same-tag pairs met on the way: equal keys mean the rows break
        uniqueness. The slot array is on huge pages where possible."""
        cdef Table t = self.table
        cdef uint64_t* entries
        cdef vector[uint64_t] same
        cdef uint32_t r, tag
        cdef const char* a
        cdef const char* b
        cdef size_t cap = 16, j, n = 0
        cdef uint64_t* slots
        entries = <uint64_t*>fs_alloc_huge((t.count + 1) * sizeof(uint64_t))
        if entries == NULL:
            raise MemoryError()
        try:
            for r in range(t.high_water):
                if t.slot_state(r) == SLOT_LIVE and self.row_tag(t.slot_row(r), &tag):
                    entries[n] = (<uint64_t>tag << 32) | r
                    n += 1
            while n * 4 > cap * 3:
                cap *= 2
            if cap != self.capacity:
                slots = <uint64_t*>fs_alloc_huge(cap * sizeof(uint64_t))
                if slots == NULL:
                    raise MemoryError()
                free(self.slots)
                self.slots = slots
                self.capacity = cap
            memset(self.slots, 0xFF, self.capacity * sizeof(uint64_t))
            fs_hash_insert_many(self.slots, self.capacity - 1, entries, n, &same)
            self.size = n
        finally:
            free(entries)
        for j in range(same.size()):
            a = t.slot_row(<uint32_t>(same[j] >> 32))
            b = t.slot_row(<uint32_t>same[j])
            if self.int_key:
                if self.row_int(a) == self.row_int(b):
                    raise UniqueViolationError(self.describe_key(b))
            else:
                self.encode_row(a, &self.probe)
                self.encode_row(b, &self.probe2)
                if self.probe == self.probe2:
                    raise UniqueViolationError(self.describe_key(b))
        return 0

    def find_rowids(self, key):
        cdef uint32_t r = self.lookup(key)
        return [] if r == NO_ROW else [r]

    def get(self, key):
        cdef uint32_t r = self.lookup(key)
        if r == NO_ROW:
            return None
        return self.table.make_row(self.table.slot_row(r))


cdef class OrderedIndex(Index):
    """Ordered index: a sorted set of encoded key + big-endian row id."""

    cdef cppset[string] entries
    cdef string entry
    cdef public bint declared_ordered

    def __cinit__(self, Table table, str name, list col_ids, bint unique, bint nulls_equal):
        self.unique = unique
        self.nulls_equal = nulls_equal
        self.declared_ordered = True

    @property
    def ordered(self):
        return self.declared_ordered

    def __len__(self):
        return self.entries.size()

    cdef size_t memory_bytes(self):
        # a red-black tree node (4 words + std::string) per entry, with malloc overhead
        return self.entries.size() * (48 + 32 + 16)

    cdef int add(self, uint32_t rowid, const char* row) except -1:
        self.encode_row(row, &self.entry)
        _append_rowid(&self.entry, rowid)
        self.entries.insert(self.entry)
        return 0

    cdef int remove(self, uint32_t rowid, const char* row) except -1:
        self.encode_row(row, &self.entry)
        _append_rowid(&self.entry, rowid)
        self.entries.erase(self.entry)
        return 0

    cdef void clear(self) noexcept:
        self.entries.clear()

    cdef int bulk_build(self) except -1:
        """Encode every row's entry, sort, check uniqueness on neighbours,
        and fill the set in order."""
        cdef Table t = self.table
        cdef vector[string] v
        cdef uint32_t r
        cdef size_t j
        cdef const char* row
        v.reserve(t.count)
        for r in range(t.high_water):
            if t.slot_state(r) == SLOT_LIVE:
                self.encode_row(t.slot_row(r), &self.entry)
                _append_rowid(&self.entry, r)
                v.push_back(self.entry)
        fs_sort_strings(v)
        if self.unique:
            for j in range(1, v.size()):
                # entries with equal keys are neighbours: keys are prefix-free
                if v[j].size() == v[j - 1].size() and \
                        memcmp(v[j].data(), v[j - 1].data(), v[j].size() - 4) == 0:
                    row = t.slot_row(_rowid_from_entry(v[j]))
                    if self.nulls_equal or not self.encode_row(row, &self.probe):
                        raise UniqueViolationError(self.describe_key(row))
        fs_set_fill_sorted(self.entries, v)
        return 0

    cdef int check_unique(self, const char* row, uint32_t exclude) except -1:
        if self.encode_row(row, &self.probe) and not self.nulls_equal:
            return 0
        cdef cppset[string].iterator it = self.entries.lower_bound(self.probe)
        while it != self.entries.end() and fs_starts_with(deref(it), self.probe):
            if _rowid_from_entry(deref(it)) != exclude:
                raise UniqueViolationError(self.describe_key(row))
            inc(it)
        return 0

    cdef void bounds(self, string* prefix, cppset[string].iterator* lo,
                     cppset[string].iterator* hi) noexcept:
        """Iterators around every entry whose key starts with ``prefix``."""
        lo[0] = self.entries.lower_bound(deref(prefix))
        if _successor(prefix):
            hi[0] = self.entries.lower_bound(deref(prefix))
        else:
            hi[0] = self.entries.end()

    def find_rowids(self, key):
        cdef cppset[string].iterator lo, hi
        self.encode_py(key, &self.probe, True)
        self.bounds(&self.probe, &lo, &hi)
        out = []
        while lo != hi:
            out.append(_rowid_from_entry(deref(lo)))
            inc(lo)
        return out

    def get(self, key):
        if not self.unique:
            raise TypeError(f"index {self.name} is not unique: use find()")
        cdef cppset[string].iterator lo, hi
        self.encode_py(key, &self.probe, False)
        self.bounds(&self.probe, &lo, &hi)
        if lo == hi:
            return None
        return self.table.make_row(self.table.slot_row(_rowid_from_entry(deref(lo))))

    def range_rowids(self, low=None, high=None, *, bint low_inclusive=True,
                     bint high_inclusive=True, bint reverse=False, Py_ssize_t limit=-1):
        if not self.declared_ordered:
            return Index.range_rowids(self, low, high)
        cdef cppset[string].iterator lo, hi
        cdef Py_ssize_t n = 0
        if low is None:
            lo = self.entries.begin()
        else:
            self.encode_py(low, &self.probe, True)
            if not low_inclusive and not _successor(&self.probe):
                return []
            lo = self.entries.lower_bound(self.probe)
        if high is None:
            hi = self.entries.end()
        else:
            self.encode_py(high, &self.probe, True)
            if high_inclusive:
                if _successor(&self.probe):
                    hi = self.entries.lower_bound(self.probe)
                else:
                    hi = self.entries.end()
            else:
                hi = self.entries.lower_bound(self.probe)
        out = []
        if lo == hi or limit == 0 or lo == self.entries.end():
            return out
        # an inverted range (low above high) is empty
        if hi != self.entries.end() and deref(lo) > deref(hi):
            return out
        if not reverse:
            while lo != hi and n != limit:
                out.append(_rowid_from_entry(deref(lo)))
                inc(lo)
                n += 1
        else:
            while hi != lo and n != limit:
                dec(hi)
                out.append(_rowid_from_entry(deref(hi)))
                n += 1
        return out

    # used by views to recompute MIN/MAX of a group
    cdef uint32_t first_with_prefix(self, const string& prefix) noexcept:
        cdef cppset[string].iterator it = self.entries.lower_bound(prefix)
        if it != self.entries.end() and fs_starts_with(deref(it), prefix):
            return _rowid_from_entry(deref(it))
        return NO_ROW

    cdef uint32_t last_with_prefix(self, string* prefix) noexcept:
        cdef cppset[string].iterator it
        cdef string p = deref(prefix)
        if _successor(&p):
            it = self.entries.lower_bound(p)
        else:
            it = self.entries.end()
        if it == self.entries.begin():
            return NO_ROW
        dec(it)
        if fs_starts_with(deref(it), deref(prefix)):
            return _rowid_from_entry(deref(it))
        return NO_ROW


cdef inline fs_u128 _int_entry(int64_t v, uint32_t rowid) noexcept:
    return ((<fs_u128>((<uint64_t>v) ^ (<uint64_t>1 << 63))) << 32) | rowid


cdef fs_u128 ROWS_PER_KEY = (<fs_u128>1) << 32


cdef class IntOrderedIndex(Index):
    """Ordered index on one NOT NULL integer or TIMESTAMP column: a sorted
    set of 128-bit integers (key, row id), compared as integers, in a
    two-level block B-tree (fs_blockset). Same behaviour as OrderedIndex,
    at a fraction of the memory and cache misses per entry."""

    cdef fs_blockset entries
    cdef int offset
    cdef int width
    cdef public bint declared_ordered

    def __cinit__(self, Table table, str name, list col_ids, bint unique, bint ordered):
        cdef ColMeta* c = &table.cols[<int>col_ids[0]]
        self.unique = unique
        self.nulls_equal = True
        self.declared_ordered = ordered
        self.offset = c.offset
        self.width = c.width

    @property
    def ordered(self):
        return self.declared_ordered

    def __len__(self):
        return self.entries.size()

    cdef size_t memory_bytes(self):
        return self.entries.memory_bytes()

    cdef inline int64_t row_key(self, const char* row) noexcept:
        return _read_int(row + self.offset, self.width)

    cdef bint key_changed(self, const char* a, const char* b) noexcept:
        return self.row_key(a) != self.row_key(b)

    cdef void clear(self) noexcept:
        self.entries.clear()

    cdef int bulk_build(self) except -1:
        """Collect (key, row id) of every row, sort (often a no-op: ids
        inserted in order), check uniqueness on neighbours, fill the blocks."""
        cdef Table t = self.table
        cdef vector[fs_u128] v
        cdef uint32_t r
        cdef size_t j
        v.reserve(t.count)
        for r in range(t.high_water):
            if t.slot_state(r) == SLOT_LIVE:
                v.push_back(_int_entry(self.row_key(t.slot_row(r)), r))
        fs_sort_u128(v.data(), v.size())
        if self.unique:
            for j in range(1, v.size()):
                if (v[j] >> 32) == (v[j - 1] >> 32):
                    raise UniqueViolationError(self.describe_key(t.slot_row(<uint32_t>v[j])))
        self.entries.load_sorted(v.data(), v.size())
        return 0

    cdef int add(self, uint32_t rowid, const char* row) except -1:
        self.entries.insert(_int_entry(self.row_key(row), rowid))
        return 0

    cdef int remove(self, uint32_t rowid, const char* row) except -1:
        self.entries.erase(_int_entry(self.row_key(row), rowid))
        return 0

    cdef int check_unique(self, const char* row, uint32_t exclude) except -1:
        cdef fs_u128 first = _int_entry(self.row_key(row), 0)
        cdef fs_bpos it = self.entries.lower_bound(first)
        while not self.entries.at_end(it) and self.entries.get(it) < first + ROWS_PER_KEY:
            if <uint32_t>self.entries.get(it) != exclude:
                raise UniqueViolationError(self.describe_key(row))
            self.entries.next(&it)
        return 0

    cdef int64_t py_key(self, object key) except? -1:
        cdef Cell cell
        if isinstance(key, (tuple, list)):
            if len(key) != 1:
                raise TypeMismatchError(f"index {self.name} of {self.table.name} takes a key of "
                                        f"1 value(s) {self.columns}, got {_short(key)}")
            key = key[0]
        py_to_cell(self.table, self.key_cols[0], key, &cell)
        if cell.null:
            raise TypeMismatchError(f"index {self.name}: its column is NOT NULL; no row has a "
                                    f"NULL key")
        return cell.i

    def find_rowids(self, key):
        cdef fs_u128 first = _int_entry(self.py_key(key), 0)
        cdef fs_bpos it = self.entries.lower_bound(first)
        out = []
        while not self.entries.at_end(it) and self.entries.get(it) < first + ROWS_PER_KEY:
            out.append(<uint32_t>self.entries.get(it))
            self.entries.next(&it)
        return out

    def get(self, key):
        if not self.unique:
            raise TypeError(f"index {self.name} is not unique: use find()")
        rows = self.find_rowids(key)
        return self.table.make_row(self.table.slot_row(rows[0])) if rows else None

    def range_rowids(self, low=None, high=None, *, bint low_inclusive=True,
                     bint high_inclusive=True, bint reverse=False, Py_ssize_t limit=-1):
        if not self.declared_ordered:
            return Index.range_rowids(self, low, high)
        cdef fs_bpos lo, hi
        cdef fs_u128 bound
        cdef Py_ssize_t n = 0
        if low is None:
            lo = self.entries.begin()
        else:
            bound = _int_entry(self.py_key(low), 0)
            lo = self.entries.lower_bound(bound if low_inclusive else bound + ROWS_PER_KEY)
        if high is None:
            hi = self.entries.end()
        else:
            bound = _int_entry(self.py_key(high), 0)
            hi = self.entries.lower_bound(bound + ROWS_PER_KEY if high_inclusive else bound)
        out = []
        if not fs_bpos_lt(lo, hi) or limit == 0:
            return out              # empty, or an inverted range
        if not reverse:
            while not fs_bpos_eq(lo, hi) and n != limit:
                out.append(<uint32_t>self.entries.get(lo))
                self.entries.next(&lo)
                n += 1
        else:
            while not fs_bpos_eq(hi, lo) and n != limit:
                self.entries.prev(&hi)
                out.append(<uint32_t>self.entries.get(hi))
                n += 1
        return out

# Included by storage.pyx: incremental maintenance of materialized views.

# -- materialized views -------------------------------------------------------

_VIEW_FUNCS = {"COUNT": AGG_COUNT, "SUM": AGG_SUM, "MIN": AGG_MIN, "MAX": AGG_MAX}


cdef class ViewMaintainer:
    """Keeps one view equal to ``SELECT g..., AGG(x)... GROUP BY g...``.

    The view is a Table whose primary key is the group columns. Its
    changes go through the same logged write primitives as any table, so
    rollback undoes them. MIN/MAX use a hidden ordered index on the source
    (group columns, aggregated column) to find the new extreme when the
    current one is deleted; SUM over a nullable column keeps a hidden count
    of non-NULL values to know when the sum becomes NULL again.
    """

    cdef readonly Table source
    cdef readonly Table view
    cdef readonly list hidden_indexes
    cdef readonly tuple definition  # (source, group_by, ((FUNC, column or None), ...))
    cdef int ngroup
    cdef int* group_src         # source column of each group column
    cdef int nagg
    cdef int* agg_func
    cdef int* agg_src           # source column, -1 for COUNT(*)
    cdef int* agg_view          # view column holding the aggregate
    cdef int* agg_nonnull       # view column of the hidden non-NULL count, or -1
    cdef list agg_index         # OrderedIndex for MIN/MAX, else None
    cdef int count_col          # view column of COUNT(*) (maybe hidden)
    cdef string key
    cdef string key2

    def __cinit__(self, Store store, str name, Table source, list group_by, list aggregates,
                  column_names, uint32_t table_id):
        cdef int i
        self.source = source
        self.hidden_indexes = []
        self.definition = (source.name, tuple(group_by), tuple((f, c) for f, c in aggregates))
        self.agg_index = []
        if not group_by:
            raise ValueError(f"view {name} needs GROUP BY columns")
        for g in group_by:
            if g not in source.col_index:
                raise ValueError(f"view {name}: {source.name} has no column {g!r}")
        self.ngroup = len(group_by)
        self.nagg = len(aggregates)
        self.group_src = <int*>malloc(self.ngroup * sizeof(int))
        self.agg_func = <int*>malloc((self.nagg + 1) * sizeof(int))
        self.agg_src = <int*>malloc((self.nagg + 1) * sizeof(int))
        self.agg_view = <int*>malloc((self.nagg + 1) * sizeof(int))
        self.agg_nonnull = <int*>malloc((self.nagg + 1) * sizeof(int))
        columns = []
        for i, g in enumerate(group_by):
            self.group_src[i] = source.col_index[g]
            columns.append(source.columns[self.group_src[i]])
        hidden = []
        self.count_col = -1
        default_names = list(group_by)
        for i, (func, col) in enumerate(aggregates):
            if func not in _VIEW_FUNCS:
                raise ValueError(f"view {name}: unsupported aggregate {func}")
            if col is None:
                if func != "COUNT":
                    raise ValueError(f"view {name}: {func}(*) is not an aggregate")
                self.agg_func[i] = AGG_COUNT_STAR
                self.agg_src[i] = -1
                columns.append(Column("count", ColumnType.BIGINT, nullable=False))
                default_names.append("count")
                if self.count_col < 0:
                    self.count_col = self.ngroup + i
            else:
                if col not in source.col_index:
                    raise ValueError(f"view {name}: {source.name} has no column {col!r}")
                src_col = source.columns[source.col_index[col]]
                self.agg_src[i] = source.col_index[col]
                self.agg_func[i] = _VIEW_FUNCS[func]
                default_names.append(f"{func.lower()}_{col}")
                if func == "COUNT":
                    self.agg_func[i] = AGG_COUNT
                    columns.append(Column("c", ColumnType.BIGINT, nullable=False))
                elif func == "SUM":
                    st = src_col.type
                    if st in (ColumnType.VARCHAR, ColumnType.VARBINARY, ColumnType.TIMESTAMP):
                        raise ValueError(f"view {name}: SUM({col}) of a {st.name} column")
                    if st in (ColumnType.TINYINT, ColumnType.SMALLINT, ColumnType.INTEGER):
                        st = ColumnType.BIGINT
                    columns.append(Column("s", st, nullable=src_col.nullable))
                else:
                    columns.append(Column("m", src_col.type, src_col.size, src_col.nullable,
                                          None, src_col.size_in_bytes))
            self.agg_view[i] = self.ngroup + i
            self.agg_nonnull[i] = -1
        nvisible = len(columns)
        if column_names is None:
            column_names = default_names
        column_names = [c.lower() for c in column_names]
        if len(column_names) != nvisible:
            raise ValueError(f"view {name}: {len(column_names)} column names for {nvisible} columns")
        columns = [Column(n, c.type, c.size, c.nullable, None, c.size_in_bytes)
                   for n, c in zip(column_names, columns)]
        # hidden columns: a COUNT(*) if the view has none, non-NULL counts for SUM
        if self.count_col < 0:
            self.count_col = len(columns)
            columns.append(Column("__count", ColumnType.BIGINT, nullable=False))
        for i in range(self.nagg):
            if self.agg_func[i] == AGG_SUM and source.columns[self.agg_src[i]].nullable:
                self.agg_nonnull[i] = len(columns)
                columns.append(Column(f"__nonnull_{i}", ColumnType.BIGINT, nullable=False))
        # the group key may hold NULLs: in a view NULL is one group
        self.view = Table(store, name, columns, [c.name for c in columns[:self.ngroup]],
                          table_id, nvisible, True)
        self.view.view_maintainer = self
        for i in range(self.nagg):
            if self.agg_func[i] == AGG_MIN or self.agg_func[i] == AGG_MAX:
                cols = list(group_by) + [source.all_names[self.agg_src[i]]]
                idx = source.add_index(f"__{name}_{i}", cols, False, True, False)
                self.hidden_indexes.append(idx)
                self.agg_index.append(idx)
            else:
                self.agg_index.append(None)

    cdef int build(self, Store store) except -1:
        """Fill the view from the rows already in the source (the view must
        be registered in the store: the undo log refers to it by id)."""
        cdef uint32_t r
        cdef Table source = self.source
        cdef size_t mark = store.stmt_begin()
        try:
            for r in range(source.high_water):
                if source.slot_state(r) == SLOT_LIVE:
                    self.on_insert(source.slot_row(r))
        except BaseException:
            store.stmt_fail(mark)
            raise
        store.stmt_end()
        return 0

    def __dealloc__(self):
        free(self.group_src)
        free(self.agg_func)
        free(self.agg_src)
        free(self.agg_view)
        free(self.agg_nonnull)

    cdef void group_key(self, const char* src_row, string* out) noexcept:
        cdef Cell cell
        cdef int i
        out.clear()
        for i in range(self.ngroup):
            row_to_cell(&self.source.cols[self.group_src[i]], src_row, &cell)
            encode_cell(&self.source.cols[self.group_src[i]], &cell, out)

    cdef inline int64_t get_int(self, const char* row, int vcol) noexcept:
        return _read_int(row + self.view.cols[vcol].offset, 8)

    cdef inline void set_int(self, char* row, int vcol, int64_t v) noexcept:
        _write_int(row + self.view.cols[vcol].offset, 8, v)

    cdef int on_insert(self, const char* src_row) except -1:
        cdef Table v = self.view
        cdef HashIndex pk = v.pk
        cdef uint32_t rowid
        cdef char* row = v.scratch
        cdef Cell cell, cur
        cdef int i
        self.group_key(src_row, &self.key)
        rowid = pk.find_key(self.key)
        if rowid == NO_ROW:
            memset(row, 0, v.row_size)
            for i in range(self.ngroup):
                row_to_cell(&self.source.cols[self.group_src[i]], src_row, &cell)
                cell_to_row(v, &v.cols[i], &cell, row)
            self.set_int(row, self.count_col, 1)
            for i in range(self.nagg):
                f = self.agg_func[i]
                if f == AGG_COUNT_STAR:
                    continue
                row_to_cell(&self.source.cols[self.agg_src[i]], src_row, &cell)
                if f == AGG_COUNT:
                    self.set_int(row, self.agg_view[i], 0 if cell.null else 1)
                    continue
                if self.agg_nonnull[i] >= 0:
                    self.set_int(row, self.agg_nonnull[i], 0 if cell.null else 1)
                cell_to_row(v, &v.cols[self.agg_view[i]], &cell, row)
            v.insert_row(row)
            return 0
        v.copy_row_owned(v.slot_row(rowid), row)
        self.set_int(row, self.count_col, self.get_int(row, self.count_col) + 1)
        for i in range(self.nagg):
            f = self.agg_func[i]
            if f == AGG_COUNT_STAR:
                continue
            row_to_cell(&self.source.cols[self.agg_src[i]], src_row, &cell)
            if cell.null:
                continue
            if f == AGG_COUNT:
                self.set_int(row, self.agg_view[i], self.get_int(row, self.agg_view[i]) + 1)
                continue
            if self.agg_nonnull[i] >= 0:
                self.set_int(row, self.agg_nonnull[i], self.get_int(row, self.agg_nonnull[i]) + 1)
            row_to_cell(&v.cols[self.agg_view[i]], row, &cur)
            if f == AGG_SUM:
                self.add_to_sum(row, i, &cur, &cell, False)
            elif cur.null or (f == AGG_MIN and cell_cmp(&v.cols[self.agg_view[i]], &cell, &cur) < 0) \
                    or (f == AGG_MAX and cell_cmp(&v.cols[self.agg_view[i]], &cell, &cur) > 0):
                self.replace_value(row, i, &cell)
        v.update_slot(rowid, row)
        return 0

    cdef int on_delete(self, const char* src_row) except -1:
        cdef Table v = self.view
        cdef HashIndex pk = v.pk
        cdef uint32_t rowid, other
        cdef char* row = v.scratch
        cdef Cell cell, cur
        cdef int i
        cdef int64_t n
        cdef OrderedIndex idx
        self.group_key(src_row, &self.key)
        rowid = pk.find_key(self.key)
        if rowid == NO_ROW:
            return 0
        n = self.get_int(v.slot_row(rowid), self.count_col) - 1
        if n == 0:
            v.delete_slot(rowid)
            return 0
        v.copy_row_owned(v.slot_row(rowid), row)
        self.set_int(row, self.count_col, n)
        for i in range(self.nagg):
            f = self.agg_func[i]
            if f == AGG_COUNT_STAR:
                continue
            row_to_cell(&self.source.cols[self.agg_src[i]], src_row, &cell)
            if cell.null:
                continue
            if f == AGG_COUNT:
                self.set_int(row, self.agg_view[i], self.get_int(row, self.agg_view[i]) - 1)
            elif f == AGG_SUM:
                row_to_cell(&v.cols[self.agg_view[i]], row, &cur)
                if self.agg_nonnull[i] >= 0:
                    self.set_int(row, self.agg_nonnull[i], self.get_int(row, self.agg_nonnull[i]) - 1)
                    if self.get_int(row, self.agg_nonnull[i]) == 0:
                        cur.null = True
                        self.replace_value(row, i, &cur)
                        continue
                self.add_to_sum(row, i, &cur, &cell, True)
            else:
                row_to_cell(&v.cols[self.agg_view[i]], row, &cur)
                if cur.null or cell_cmp(&v.cols[self.agg_view[i]], &cell, &cur) != 0:
                    continue
                # the deleted row held the extreme: ask the hidden index
                idx = <OrderedIndex>self.agg_index[i]
                self.key2.assign(self.key)
                self.key2.push_back(1)      # skip NULL values of the column
                if f == AGG_MIN:
                    other = idx.first_with_prefix(self.key2)
                else:
                    other = idx.last_with_prefix(&self.key2)
                if other == NO_ROW:
                    cur.null = True
                else:
                    row_to_cell(&self.source.cols[self.agg_src[i]], self.source.slot_row(other), &cur)
                self.replace_value(row, i, &cur)
        v.update_slot(rowid, row)
        return 0

    cdef int replace_value(self, char* row, int i, Cell* cell) except -1:
        cdef Table v = self.view
        cdef ColMeta* c = &v.cols[self.agg_view[i]]
        if (c.type == T_VARCHAR or c.type == T_VARBINARY) and not c.inline_value:
            v.free_one_outline(c, row)
        cell_to_row(v, c, cell, row)
        return 0

    cdef int add_to_sum(self, char* row, int i, Cell* cur, Cell* cell, bint subtract) except -1:
        cdef Table v = self.view
        cdef ColMeta* c = &v.cols[self.agg_view[i]]
        cdef ColMeta* sc = &self.source.cols[self.agg_src[i]]
        cdef int64_t a, b
        cdef char buf_a[16]
        cdef char buf_b[16]
        if cur.null:
            cur.null = False
            if c.type == T_FLOAT:
                cur.f = 0.0
            elif c.type == T_DECIMAL:
                cur.dhi = 0
                cur.dlo = 0
            else:
                cur.i = 0
        if c.type == T_FLOAT:
            cur.f = cur.f - cell.f if subtract else cur.f + cell.f
        elif c.type == T_DECIMAL:
            fs_int128_store(buf_a, cur.dhi, cur.dlo)
            fs_int128_store(buf_b, cell.dhi, cell.dlo)
            if not fs_int128_add_checked(buf_a, buf_b, buf_a, subtract):
                raise ValueOutOfRangeError(f"{v.name}: SUM of {self.source.name}."
                                           f"{self.source.all_names[self.agg_src[i]]} "
                                           f"is out of range for DECIMAL(38,12)")
            cur.dhi = fs_int128_hi(buf_a)
            cur.dlo = fs_int128_lo(buf_a)
        else:
            a = cur.i
            b = cell.i
            if subtract:
                if (b < 0 and a > 0x7FFFFFFFFFFFFFFF + b) or (b > 0 and a < -0x7FFFFFFFFFFFFFFF - 1 + b):
                    raise ValueOutOfRangeError(self.overflow_message(i))
                cur.i = a - b
            else:
                if (b > 0 and a > 0x7FFFFFFFFFFFFFFF - b) or (b < 0 and a < -0x7FFFFFFFFFFFFFFF - 1 - b):
                    raise ValueOutOfRangeError(self.overflow_message(i))
                cur.i = a + b
        cell_to_row(v, c, cur, row)
        return 0

    cdef str overflow_message(self, int i):
        return (f"{self.view.name}: SUM of {self.source.name}."
                f"{self.source.all_names[self.agg_src[i]]} is out of range for BIGINT")

package pgqrs

import "context"

// schemaRepo runs the statements about pgqrs's schema itself: the
// migration versions table and Verify's checks (see repo_queues.go for what
// a repository is).
type schemaRepo struct{ d *dialect }

// createVersionTable creates pgqrs_schema_version unless it exists.
func (r schemaRepo) createVersionTable(ctx context.Context, q querier) error {
	_, err := q.ExecContext(ctx, r.d.version.createTable)
	return err
}

// applied returns the versions of the applied migrations, in order.
func (r schemaRepo) applied(ctx context.Context, q querier) ([]int64, error) {
	rows, err := q.QueryContext(ctx, r.d.version.applied)
	if err != nil {
		return nil, err
	}
	return scanIDs(rows)
}

// record notes migration version (called name) as applied.
func (r schemaRepo) record(ctx context.Context, q querier, version int, name string) error {
	_, err := q.ExecContext(ctx, r.d.version.record, version, name)
	return err
}

// tableExists reports whether pgqrs table name exists (in the Store's
// schema, on Postgres).
func (r schemaRepo) tableExists(ctx context.Context, q querier, name string) (ok bool, err error) {
	err = q.QueryRowContext(ctx, r.d.admin.tableExists, r.d.relation(name)).Scan(&ok)
	return ok, err
}

// indexExists reports whether pgqrs index (or trigger, on SQLite) name
// exists.
func (r schemaRepo) indexExists(ctx context.Context, q querier, name string) (ok bool, err error) {
	err = q.QueryRowContext(ctx, r.d.admin.indexExists, r.d.relation(name)).Scan(&ok)
	return ok, err
}

// triggerEnabled reports whether table has trigger name and it is not
// disabled (ALTER TABLE … DISABLE TRIGGER).
func (r schemaRepo) triggerEnabled(ctx context.Context, q querier, tr tableTrigger) (ok bool, err error) {
	err = q.QueryRowContext(ctx, r.d.admin.triggerEnabled, tr.name, r.d.relation(tr.table)).Scan(&ok)
	return ok, err
}

// orphans counts messages and archived messages whose queue is missing.
func (r schemaRepo) orphans(ctx context.Context, q querier) (n int64, err error) {
	err = q.QueryRowContext(ctx, r.d.admin.orphans).Scan(&n)
	return n, err
}

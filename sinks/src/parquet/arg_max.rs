//! `argMax(value, version)` for the embedded store: the value of the row with the highest
//! version in each group, as ClickHouse's `argMax` gives it.
//!
//! The insights routes use it to take the newest version of each window in one hash
//! aggregate per id. DataFusion's `first_value(value ORDER BY version DESC)` gives the same
//! answer but compares orderings row by row and costs about twice as much over 288k windows
//! (bench/RESULTS.md, insights); this one keeps two plain vectors per group.
//!
//! Rows whose version is NULL are skipped; the newest row's value is returned even when it
//! is NULL (a newer result without a value replaces an older one with a value). Of rows
//! with the same version (exact copies, written again by a replay) the first one seen wins.
//! Numbers only: the value is read as `DOUBLE`, the version as `BIGINT`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// The `argMax` function, ready to register with a session.
pub fn udaf() -> AggregateUDF {
    AggregateUDF::from(ArgMax {
        signature: Signature::exact(
            vec![DataType::Float64, DataType::Int64],
            Volatility::Immutable,
        ),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ArgMax {
    signature: Signature,
}

impl AggregateUDFImpl for ArgMax {
    // SQL names are folded to lower case, so `argMax(...)` in a query finds it.
    fn name(&self) -> &str {
        "argmax"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<Single>::default())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "value"),
                DataType::Float64,
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "version"),
                DataType::Int64,
                true,
            )),
        ])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::<Groups>::default())
    }
}

/// The newest row seen so far: its version and value (`None`: the value was NULL).
type Newest = (i64, Option<f64>);

/// Offers `row` to `slot`: a row with a version replaces the newest so far only with a
/// strictly higher version, so the first of equal copies stays.
fn offer(slot: &mut Option<Newest>, value: &Float64Array, version: &Int64Array, row: usize) {
    if version.is_null(row) {
        return;
    }
    let v = version.value(row);
    if slot.is_none_or(|(newest, _)| v > newest) {
        *slot = Some((v, value.is_valid(row).then(|| value.value(row))));
    }
}

/// The `(value, version)` columns: the function's arguments, and also its state.
fn columns(values: &[ArrayRef]) -> (&Float64Array, &Int64Array) {
    (
        values[0].as_primitive::<Float64Type>(),
        values[1].as_primitive::<Int64Type>(),
    )
}

/// One group at a time (DataFusion's fallback, e.g. without GROUP BY).
#[derive(Debug, Default)]
struct Single {
    newest: Option<Newest>,
}

impl Single {
    fn add(&mut self, values: &[ArrayRef]) {
        let (value, version) = columns(values);
        for row in 0..version.len() {
            offer(&mut self.newest, value, version, row);
        }
    }
}

impl Accumulator for Single {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values);
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.add(states);
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(self.newest.and_then(|(_, v)| v)))
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Float64(self.newest.and_then(|(_, v)| v)),
            ScalarValue::Int64(self.newest.map(|(v, _)| v)),
        ])
    }

    fn size(&self) -> usize {
        size_of_val(self)
    }
}

/// Every group of a hash aggregate, indexed by group.
#[derive(Debug, Default)]
struct Groups {
    newest: Vec<Option<Newest>>,
}

impl Groups {
    fn add(
        &mut self,
        values: &[ArrayRef],
        groups: &[usize],
        filter: Option<&BooleanArray>,
        n: usize,
    ) {
        self.newest.resize(n, None);
        let (value, version) = columns(values);
        for (row, &g) in groups.iter().enumerate() {
            if filter.is_none_or(|f| f.is_valid(row) && f.value(row)) {
                offer(&mut self.newest[g], value, version, row);
            }
        }
    }
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.add(values, group_indices, opt_filter, total_num_groups);
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.add(values, group_indices, None, total_num_groups);
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let newest = emit_to.take_needed(&mut self.newest);
        Ok(Arc::new(
            newest
                .iter()
                .map(|n| n.and_then(|(_, v)| v))
                .collect::<Float64Array>(),
        ))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let newest = emit_to.take_needed(&mut self.newest);
        let values: Float64Array = newest.iter().map(|n| n.and_then(|(_, v)| v)).collect();
        let versions: Int64Array = newest.iter().map(|n| n.map(|(v, _)| v)).collect();
        Ok(vec![Arc::new(values), Arc::new(versions)])
    }

    // Each row is its own state; a filtered-out row gets no version, so it is skipped.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let (value, version) = columns(values);
        let version = match opt_filter {
            None => version.clone(),
            Some(f) => {
                let kept = NullBuffer::from_iter((0..f.len()).map(|r| f.is_valid(r) && f.value(r)));
                let nulls = NullBuffer::union(version.nulls(), Some(&kept));
                Int64Array::new(version.values().clone(), nulls)
            }
        };
        Ok(vec![Arc::new(value.clone()), Arc::new(version)])
    }

    fn size(&self) -> usize {
        self.newest.capacity() * size_of::<Option<Newest>>()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{
        Float64Array, Int32Array, RecordBatch, StringArray, UInt64Array,
    };
    use datafusion::arrow::datatypes::Schema;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// `(id, version, value, count)` rows split over `parts` partitions, so the hash
    /// aggregate runs partial and final stages and merges states.
    /// `skip_partial`: the partial stage hands rows on as states (what DataFusion does when
    /// grouping does not reduce the rows), so the per-row state conversion runs too.
    async fn ctx(
        rows: &[(&str, Option<i32>, Option<f64>, u64)],
        parts: usize,
        skip_partial: bool,
    ) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("version", DataType::Int32, true),
            Field::new("value", DataType::Float64, true),
            Field::new("count", DataType::UInt64, false),
        ]));
        let batch = |rows: &[(&str, Option<i32>, Option<f64>, u64)]| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(rows.iter().map(|r| r.1).collect::<Int32Array>()),
                    Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
                    Arc::new(rows.iter().map(|r| r.3).collect::<UInt64Array>()),
                ],
            )
            .unwrap()
        };
        let per = rows.len().div_ceil(parts).max(1);
        // A batch per row: the partial stage decides to skip after the first batch, so the
        // later ones go through the conversion.
        let partitions = rows
            .chunks(per)
            .map(|c| c.chunks(1).map(batch).collect())
            .collect();
        let mut config = SessionConfig::new().with_target_partitions(parts.max(1));
        if skip_partial {
            let e = &mut config.options_mut().execution;
            e.skip_partial_aggregation_probe_rows_threshold = 1;
            e.skip_partial_aggregation_probe_ratio_threshold = 0.0;
        }
        let ctx = SessionContext::new_with_config(config);
        ctx.register_udaf(udaf());
        let table = MemTable::try_new(schema.clone(), partitions).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    async fn newest(ctx: &SessionContext, sql: &str) -> Vec<(String, Option<f64>)> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut out = Vec::new();
        for b in batches {
            let ids = b.column(0).as_string::<i32>();
            let values = b.column(1).as_primitive::<Float64Type>();
            for r in 0..b.num_rows() {
                out.push((
                    ids.value(r).to_owned(),
                    values.is_valid(r).then(|| values.value(r)),
                ));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    const ROWS: &[(&str, Option<i32>, Option<f64>, u64)] = &[
        ("a", Some(0), Some(1.0), 1),
        ("b", Some(3), Some(30.0), 3),
        ("a", Some(2), Some(5.0), 5),
        ("c", Some(1), Some(7.0), 7),
        ("b", Some(1), Some(10.0), 1),
        ("a", Some(1), Some(3.0), 3),
        ("c", Some(1), Some(7.0), 7), // an exact copy
        ("d", Some(0), Some(2.0), 2),
        ("d", Some(1), None, 4),   // the newest has no value
        ("e", None, Some(9.0), 9), // no version: not a candidate
    ];

    fn expected() -> Vec<(String, Option<f64>)> {
        [
            ("a", Some(5.0)),
            ("b", Some(30.0)),
            ("c", Some(7.0)),
            ("d", None),
            ("e", None),
        ]
        .into_iter()
        .map(|(id, v)| (id.to_owned(), v))
        .collect()
    }

    #[tokio::test]
    async fn the_newest_version_wins_in_every_group_whatever_the_partitioning() {
        for parts in [1, 2, 3, 10] {
            for skip_partial in [false, true] {
                let ctx = ctx(ROWS, parts, skip_partial).await;
                let sql = "SELECT id, argMax(value, version) FROM t GROUP BY id";
                let got = newest(&ctx, sql).await;
                assert_eq!(
                    got,
                    expected(),
                    "{parts} partitions, skip partial {skip_partial}"
                );
            }
        }
    }

    #[tokio::test]
    async fn integer_columns_are_read_as_numbers_and_filters_apply() {
        let ctx = ctx(ROWS, 2, true).await;
        let got = newest(
            &ctx,
            "SELECT id, argMax(count, version) FILTER (WHERE version < 2) FROM t GROUP BY id",
        )
        .await;
        let want: Vec<(String, Option<f64>)> = [
            ("a", Some(3.0)),
            ("b", Some(1.0)),
            ("c", Some(7.0)),
            ("d", Some(4.0)),
            ("e", None),
        ]
        .into_iter()
        .map(|(id, v)| (id.to_owned(), v))
        .collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn without_group_by_the_newest_row_of_the_table_wins() {
        let ctx = ctx(ROWS, 3, false).await;
        let got = newest(&ctx, "SELECT 'all', argMax(value, version) FROM t").await;
        assert_eq!(got, vec![("all".to_owned(), Some(30.0))]);
    }
}

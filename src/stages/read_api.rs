//! The read API stage: the catalog of aggregates from the pipeline spec, and the reader
//! of whichever store this deployment writes (ClickHouse, or Parquet in the data dir).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use helios_pipeline::expr::AggregateFn;
use helios_pipeline::spec::{Aggregate, Window};
use helios_query_api::ApiState;
use helios_query_api::catalog::{
    AggregateInfo, Catalog, MeasureFunction, MeasureInfo, WindowInfo, WindowKind,
};
use helios_query_api::store::{ClickHouseReader, DataFusionReader, ReadStore};
use helios_sinks::StoreSpec;
use helios_sinks::clickhouse::ClickHouseConfig;

/// What the API may be asked about: the spec's aggregates, their group keys, measures and
/// windows.
pub fn catalog(aggregates: &[Aggregate]) -> Catalog {
    Catalog {
        aggregates: aggregates
            .iter()
            .map(|a| AggregateInfo {
                name: a.name.clone(),
                group_by: a.group_by.iter().map(|k| k.name.clone()).collect(),
                measures: a
                    .measures
                    .iter()
                    .map(|m| MeasureInfo {
                        name: m.name.clone(),
                        function: match m.function {
                            AggregateFn::Count => MeasureFunction::Count,
                            AggregateFn::Sum => MeasureFunction::Sum,
                            AggregateFn::Min => MeasureFunction::Min,
                            AggregateFn::Max => MeasureFunction::Max,
                            AggregateFn::Avg => MeasureFunction::Avg,
                            AggregateFn::CountDistinct => MeasureFunction::CountDistinct,
                            AggregateFn::Quantile(_) => MeasureFunction::Quantile,
                            AggregateFn::First => MeasureFunction::First,
                            AggregateFn::Last => MeasureFunction::Last,
                        },
                    })
                    .collect(),
                window: match a.window {
                    Window::Tumbling { size } => WindowInfo {
                        kind: WindowKind::Tumbling,
                        size_seconds: size.as_secs(),
                        slide_seconds: size.as_secs(),
                    },
                    Window::Hopping { size, slide } => WindowInfo {
                        kind: WindowKind::Hopping,
                        size_seconds: size.as_secs(),
                        slide_seconds: slide.as_secs(),
                    },
                    Window::Session { gap } => WindowInfo {
                        kind: WindowKind::Session,
                        size_seconds: gap.as_secs(),
                        slide_seconds: gap.as_secs(),
                    },
                },
            })
            .collect(),
    }
}

/// The read API's state over ClickHouse (`clickhouse` given) or the Parquet store under
/// `data_dir`.
pub async fn read_state(
    catalog: Catalog,
    store: &StoreSpec,
    clickhouse: Option<ClickHouseConfig>,
    data_dir: &Path,
) -> anyhow::Result<ApiState> {
    let reader: Arc<dyn ReadStore> = match clickhouse {
        Some(config) => Arc::new(
            ClickHouseReader::new(&config)
                .with_context(|| format!("configuring the ClickHouse reader for {}", config.url))?,
        ),
        None => {
            let dir = crate::stages::sinks::store_dir(data_dir);
            Arc::new(
                DataFusionReader::open(&dir, store.clone())
                    .await
                    .with_context(|| format!("opening the Parquet store in {}", dir.display()))?,
            )
        }
    };
    Ok(ApiState::new(reader, catalog))
}

#!/usr/bin/env python3
"""Build the Grafana dashboards of the MLOps stack from code (grafana-foundation-sdk).

Writes predictor.json and hosts.json into the grafana role's files/dashboards
folder (committed; the role copies them to the monitoring host). Run it after
changing this file; `--check` only compares and exits 1 when a committed file is
out of date.

    .venv/bin/python scripts/build_dashboards.py [--output-dir DIR] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import (
    dashboard,
    heatmap,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import heatmap as heatmap_models
from grafana_foundation_sdk.models import prometheus as prometheus_models

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = (
    ROOT
    / "collections"
    / "ansible_collections"
    / "mlops"
    / "stack"
    / "roles"
    / "grafana"
    / "files"
    / "dashboards"
)

# Every panel and query variable takes its datasource from this dashboard variable, never
# from a fixed uid: the grafana role sets the variable's current value to the uid it
# provisions (grafana_datasource_uid), and a user may switch it in the UI.
DATASOURCE_VARIABLE = "datasource"
DATASOURCE = dashboard_models.DataSourceRef(
    type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}"
)
RATE = "$__rate_interval"
PREDICT = 'endpoint="/predict"'
PREDICTORS = 'instance=~"$instance"'
HOSTS = 'host=~"$host"'
REAL_FS = 'fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs|autofs"'


class Ids:
    """Stable panel ids in build order, so regenerating gives the same JSON."""

    def __init__(self) -> None:
        self.next_id = 0

    def __call__(self) -> int:
        self.next_id += 1
        return self.next_id


def query(expr: str, legend: str = "__auto", ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref)
        .datasource(DATASOURCE)
        .range()
    )


def instant_table_query(expr: str, ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(expr)
        .ref_id(ref)
        .datasource(DATASOURCE)
        .instant()
        .format(prometheus_models.PromQueryFormat.TABLE)
    )


def legend_table() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def graph(
    ids: Ids,
    title: str,
    unit: str,
    *targets: prometheus.Dataquery,
    description: str = "",
    width: int = 12,
    stacked: bool = False,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(ids())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(8)
        .fill_opacity(10)
        .legend(legend_table())
        .targets(list(targets))
    )
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    return panel


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=value, color=color) for value, color in steps])
    )


def last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().values(False).calcs(["lastNotNull"])


def up_down_stat(
    ids: Ids,
    title: str,
    expr: str,
    legend: str,
    description: str,
    up_text: str = "up",
    down_text: str = "down",
    width: int = 6,
) -> stat.Panel:
    mapping = dashboard_models.ValueMap(
        options={
            "0": dashboard_models.ValueMappingResult(text=down_text, color="red", index=0),
            "1": dashboard_models.ValueMappingResult(text=up_text, color="green", index=1),
        }
    )
    return (
        stat.Panel()
        .id(ids())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(4)
        .mappings([mapping])
        .thresholds(thresholds((None, "red"), (1, "green")))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(last_value())
        .with_target(query(expr, legend))
    )


def query_variable(name: str, label: str, expr: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(
            {"query": expr, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1}
        )
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dashboard_models.VariableOption(selected=True, text="All", value="$__all"))
    )


def datasource_variable() -> dashboard.DatasourceVariable:
    """The Prometheus datasource the panels use; no current value here (see DATASOURCE)."""
    return (
        dashboard.DatasourceVariable(DATASOURCE_VARIABLE)
        .label("Data source")
        .description("Prometheus datasource of every panel.")
        .type("prometheus")
    )


def base(uid: str, title: str, description: str) -> dashboard.Dashboard:
    """A dashboard whose first variable is the datasource every panel and query uses."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["mlops"])
        .editable()
        .timezone("browser")
        .time("now-1h", "now")
        .refresh("10s")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .with_variable(datasource_variable())
    )


def build_predictor() -> dashboard_models.Dashboard:
    ids = Ids()
    sel = f"{{{PREDICTORS}}}"
    predict_sel = f"{{{PREDICTORS}, {PREDICT}}}"
    errors_sel = f'{{{PREDICTORS}, status=~"5.."}}'
    feature_sel = f'{{{PREDICTORS}, feature=~"$feature"}}'
    board = (
        base(
            "mlops-predictor",
            "MLOps / Predictors",
            "Traffic, errors, latency, predictions, inputs and model state of the predictors.",
        )
        .with_variable(
            query_variable("instance", "Predictor", "label_values(predictor_model_info, instance)")
        )
        .with_variable(
            query_variable(
                "feature", "Feature", "label_values(predictor_feature_value_bucket, feature)"
            )
        )
    )

    board = board.with_row(dashboard.Row("Service").id(ids()))
    board = board.with_panel(
        up_down_stat(
            ids,
            "Predictors scraped",
            f'up{{job="predictor", {PREDICTORS}}}',
            "{{host}}",
            "Prometheus can scrape the predictor (PredictorDown fires after 30 s of 0).",
            width=8,
        )
    )
    board = board.with_panel(
        up_down_stat(
            ids,
            "Registry reachable",
            f"predictor_registry_up{sel}",
            "{{host}}",
            "The predictor reached the MLflow Model Registry on its last poll.",
            up_text="reachable",
            down_text="unreachable",
            width=8,
        )
    )
    board = board.with_panel(
        stat.Panel()
        .id(ids())
        .title("Since last registry success")
        .description("Seconds since the predictor last reached the registry.")
        .datasource(DATASOURCE)
        .unit("s")
        .span(8)
        .height(4)
        .thresholds(thresholds((None, "green"), (120, "orange"), (300, "red")))
        .color_mode(common.BigValueColorMode.VALUE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(last_value())
        .with_target(
            query(f"time() - predictor_registry_last_success_timestamp_seconds{sel}", "{{host}}")
        )
    )

    board = board.with_row(dashboard.Row("Traffic").id(ids()))
    board = board.with_panel(
        graph(
            ids,
            "Request rate",
            "reqps",
            query(
                f"sum by (host, endpoint) (rate(predictor_requests_total{sel}[{RATE}]))",
                "{{host}} {{endpoint}}",
            ),
            description="Requests per second by predictor and endpoint.",
        )
    )
    board = board.with_panel(
        graph(
            ids,
            "Error ratio (5xx)",
            "percentunit",
            query(
                # "or ... * 0": with no 5xx series at all the ratio is 0, not "No data"
                f"(sum by (host) (rate(predictor_requests_total{errors_sel}[{RATE}]))"
                f" or sum by (host) (rate(predictor_requests_total{sel}[{RATE}])) * 0)"
                f" / sum by (host) (rate(predictor_requests_total{sel}[{RATE}]))",
                "{{host}}",
            ),
            description="Share of requests answered with a 5xx (PredictorHighErrorRatio: > 5 %).",
        )
    )
    board = board.with_panel(
        graph(
            ids,
            "/predict latency",
            "s",
            *[
                query(
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(predictor_request_duration_seconds_bucket{predict_sel}[{RATE}])))",
                    f"p{round(q * 100)}",
                    ref,
                )
                for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
            ],
            description="p50, p95 and p99 of /predict over the selected predictors "
            "(PredictorHighLatencyP99: p99 > 500 ms).",
            width=24,
        )
    )

    board = board.with_row(dashboard.Row("Predictions and inputs").id(ids()))
    board = board.with_panel(
        graph(
            ids,
            "Predictions per class",
            "ops",
            query(f"sum by (class) (rate(predictor_predictions_total{sel}[{RATE}]))", "{{class}}"),
            description="Predicted classes per second; a shift hints at drifting inputs.",
            stacked=True,
        )
    )
    board = board.with_panel(
        graph(
            ids,
            "Feature medians",
            "none",
            query(
                f"histogram_quantile(0.5, sum by (feature, le) "
                f"(rate(predictor_feature_value_bucket{sel}[{RATE}])))",
                "{{feature}} p50",
            ),
            description="Median of every input feature seen by /predict.",
        )
    )
    board = board.with_panel(
        heatmap.Panel()
        .id(ids())
        .title("Feature $feature")
        .description("Distribution of the input feature over time (histogram buckets).")
        .datasource(DATASOURCE)
        .span(6)
        .height(8)
        .repeat("feature")
        .repeat_direction("h")
        .max_per_row(4)
        .calculate(False)
        .color(
            heatmap.HeatmapColorOptions()
            .mode(heatmap_models.HeatmapColorMode.SCHEME)
            .scheme("Spectral")
            .steps(64)
            .exponent(0.5)
        )
        .with_target(
            query(
                f"sum by (le) (rate(predictor_feature_value_bucket{feature_sel}[{RATE}]))",
                "{{le}}",
            ).format(prometheus_models.PromQueryFormat.HEATMAP)
        )
    )

    board = board.with_row(dashboard.Row("Model").id(ids()))
    board = board.with_panel(
        table.Panel()
        .id(ids())
        .title("Served model")
        .description("Model name, version, alias and backend each predictor serves now.")
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
        .with_target(
            instant_table_query(
                f"max by (host, name, version, alias, backend) (predictor_model_info{sel})"
            )
        )
        .with_transformation(
            dashboard_models.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True, "Value": True}},
            )
        )
    )
    board = board.with_panel(
        graph(
            ids,
            "Model reloads",
            "short",
            query(
                f"sum by (host) (increase(predictor_model_reloads_total{sel}[{RATE}]))",
                "{{host}} reloads",
                "A",
            ),
            query(
                f"sum by (host) (increase(predictor_model_reload_failures_total{sel}[{RATE}]))",
                "{{host}} failures",
                "B",
            ),
            description="Successful and failed hot reloads (ModelReloadFailing fires on failures).",
        )
    )
    return board.build()


def build_hosts() -> dashboard_models.Dashboard:
    ids = Ids()
    sel = f"{{{HOSTS}}}"
    fs_sel = f"{{{HOSTS}, {REAL_FS}}}"
    net_sel = f'{{{HOSTS}, device!~"lo|veth.*|docker.*|br-.*"}}'
    board = base(
        "mlops-hosts",
        "MLOps / Hosts",
        "CPU, memory, disk and network of every host (node exporter).",
    ).with_variable(query_variable("host", "Host", "label_values(node_uname_info, host)"))
    board = board.with_panel(
        up_down_stat(
            ids,
            "Node exporters",
            f'up{{job="node", {HOSTS}}}',
            "{{host}}",
            "Prometheus can scrape the node exporter of the host.",
            width=24,
        )
    )

    board = board.with_row(dashboard.Row("CPU and memory").id(ids()))
    board = board.with_panel(
        graph(
            ids,
            "CPU busy",
            "percentunit",
            query(
                f'1 - avg by (host) (rate(node_cpu_seconds_total{{{HOSTS}, mode="idle"}}[{RATE}]))',
                "{{host}}",
            ),
            description="Share of CPU time not idle, averaged over the host's cores.",
        )
    )
    board = board.with_panel(
        graph(
            ids,
            "Load average (1 min)",
            "short",
            query(f"node_load1{sel}", "{{host}}"),
            description="Runnable processes averaged over one minute.",
        )
    )
    board = board.with_panel(
        graph(
            ids,
            "Memory used",
            "percentunit",
            query(
                f"1 - node_memory_MemAvailable_bytes{sel} / node_memory_MemTotal_bytes{sel}",
                "{{host}}",
            ),
            description="Memory not available to new processes (HostMemoryPressure: > 90 %).",
        )
    )
    board = board.with_panel(
        graph(
            ids,
            "Memory available",
            "bytes",
            query(f"node_memory_MemAvailable_bytes{sel}", "{{host}}"),
            description="Memory available to new processes without swapping.",
        )
    )

    board = board.with_row(dashboard.Row("Disk").id(ids()))
    board = board.with_panel(
        graph(
            ids,
            "Disk space used",
            "percentunit",
            query(
                f"1 - node_filesystem_avail_bytes{fs_sel} / node_filesystem_size_bytes{fs_sel}",
                "{{host}} {{mountpoint}}",
            ),
            description="Share of each real file system in use (HostDiskPressure: > 90 %).",
        )
    )
    board = board.with_panel(
        graph(
            ids,
            "Disk throughput",
            "Bps",
            query(
                f"sum by (host) (rate(node_disk_read_bytes_total{sel}[{RATE}]))",
                "{{host}} read",
                "A",
            ),
            query(
                f"sum by (host) (rate(node_disk_written_bytes_total{sel}[{RATE}]))",
                "{{host}} written",
                "B",
            ),
            description="Bytes read and written per second over all block devices.",
        )
    )

    board = board.with_row(dashboard.Row("Network").id(ids()))
    board = board.with_panel(
        graph(
            ids,
            "Network received",
            "Bps",
            query(
                f"sum by (host) (rate(node_network_receive_bytes_total{net_sel}[{RATE}]))",
                "{{host}}",
            ),
            description="Bytes received per second, loopback and bridges excluded.",
        )
    )
    board = board.with_panel(
        graph(
            ids,
            "Network sent",
            "Bps",
            query(
                f"sum by (host) (rate(node_network_transmit_bytes_total{net_sel}[{RATE}]))",
                "{{host}}",
            ),
            description="Bytes sent per second, loopback and bridges excluded.",
        )
    )
    return board.build()


DASHBOARDS: dict[str, Callable[[], dashboard_models.Dashboard]] = {
    "predictor.json": build_predictor,
    "hosts.json": build_hosts,
}


def render(build: Callable[[], dashboard_models.Dashboard]) -> str:
    return json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="folder for the JSON files (default: the grafana role's files/dashboards)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when a file in the folder differs from the code",
    )
    args = parser.parse_args(argv)

    stale = []
    for name, build in DASHBOARDS.items():
        path = args.output_dir / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(
            "out of date (run scripts/build_dashboards.py): " + ", ".join(map(str, stale)),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

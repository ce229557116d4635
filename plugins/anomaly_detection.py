"""anomaly_detection: the 3-sigma rule on one value column of a time series."""
import pandas as pd

from taskweaver.plugin import Plugin, register_plugin


def require_column(df: pd.DataFrame, column: str, role: str) -> None:
    if column not in df.columns:
        existing = ", ".join(map(str, df.columns))
        raise KeyError(f"anomaly_detection: {role} {column!r} is not a column of df. Columns: {existing}")


@register_plugin
class AnomalyDetection(Plugin):
    def __call__(self, df: pd.DataFrame, time_col_name: str, value_col_name: str):
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"anomaly_detection: df must be a pandas DataFrame, got {type(df).__name__}")
        require_column(df, time_col_name, "time_col_name")
        require_column(df, value_col_name, "value_col_name")
        result = df.copy()  # never change the caller's frame behind its back
        try:
            result[time_col_name] = pd.to_datetime(result[time_col_name])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"anomaly_detection: column {time_col_name!r} does not hold timestamps ({exc})") from None
        values = pd.to_numeric(result[value_col_name], errors="coerce")
        if values.notna().sum() < 2:
            raise ValueError(f"anomaly_detection: column {value_col_name!r} has fewer than 2 numeric values")
        mean, std = float(values.mean()), float(values.std())
        lower, upper = mean - 3 * std, mean + 3 * std
        # NaN compares False on both sides, so missing values are never anomalies.
        result["Is_Anomaly"] = (values < lower) | (values > upper)
        count = int(result["Is_Anomaly"].sum())
        self.log("info", f"{count} anomalies in {len(result)} rows")
        description = (
            f"There are {count} anomalies in the time series data ({len(result)} rows): values of "
            f"{value_col_name!r} outside mean {mean:.4g} +/- 3 x std {std:.4g}, i.e. outside "
            f"[{lower:.4g}, {upper:.4g}]. They are marked True in the Is_Anomaly column."
        )
        return result, description

# Databricks notebook source
# MAGIC %md
# MAGIC # Monitor the scored batch for drift
# MAGIC Compares the batch in `output_path` with the reference profile of the model version that
# MAGIC scored it (PSI, Jensen-Shannon, total-variation, L-infinity, Kolmogorov-Smirnov and
# MAGIC Wasserstein per feature, chi-squared for SEX, missing rate, unknown SEX share), logs a drift
# MAGIC report with the drift over time to MLflow, appends the metrics to the monitoring table, and
# MAGIC sets task value `retrain` when the `drift_metrics` found drift in `drift_batches` of the last
# MAGIC `drift_window` batches.

# COMMAND ----------

dbutils.widgets.text("output_path", "/Volumes/main/diabetes/data/predictions/diabetes", "Scores")
dbutils.widgets.dropdown("output_format", "parquet", ["parquet", "delta", "csv"], "Scores format")
dbutils.widgets.text("monitoring_path", "/Volumes/main/diabetes/data/monitoring/diabetes", "Table")
dbutils.widgets.dropdown("monitoring_format", "parquet", ["parquet", "delta"], "Table format")
dbutils.widgets.text("experiment_name", "/Shared/diabetes", "MLflow experiment")
dbutils.widgets.dropdown("registry", "workspace", ["workspace", "unity_catalog"], "Model registry")
dbutils.widgets.text("psi_threshold", "0.2", "PSI above which a feature drifted")
dbutils.widgets.text("missing_rate_threshold", "0.1", "Missing-rate change that is drift")
dbutils.widgets.text("unknown_share_threshold", "0.01", "Unknown SEX share that is drift")
dbutils.widgets.text("js_distance_threshold", "0.1", "Jensen-Shannon distance threshold")
dbutils.widgets.text("tv_distance_threshold", "0.1", "Total-variation distance threshold")
dbutils.widgets.text("l_infinity_threshold", "0.1", "L-infinity distance threshold")
dbutils.widgets.text("ks_threshold", "0.1", "Kolmogorov-Smirnov statistic threshold")
dbutils.widgets.text("wasserstein_threshold", "0.1", "Wasserstein / reference's decile range")
dbutils.widgets.text("chi2_pvalue_threshold", "0.01", "SEX chi-squared p-value below: drift")
dbutils.widgets.text(
    "drift_metrics", "psi,missing_rate_change,unknown_share", "Metrics that decide drift"
)
dbutils.widgets.text("history_batches", "30", "Batches in the drift-over-time chart")
dbutils.widgets.text("drift_batches", "2", "Retrain after drift in this many batches ...")
dbutils.widgets.text("drift_window", "3", "... of the last this many")
dbutils.widgets.text("batch_id", "", "Batch id (default: from the batch's content)")

# COMMAND ----------

from diabetes_mlops.steps import monitor, run_step

run_step(monitor, dbutils)

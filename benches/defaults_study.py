"""Which defaults? A default Trainer, a default estimator and scikit-learn's MLP on the bundled datasets.

    python benches/defaults_study.py [--json FILE]

Each dataset (wine, breast_cancer, digits: accuracy; diabetes: R^2) is split 75/25
(seeded, stratified for classes), raw and standardised (StandardScaler fit on the
training part). Every model is trained with its defaults (`fastbatch train`'s: the
Trainer's with standardize on); the score is on the held-out 25%, the median over 3
seeds. The README's defaults table comes from this script.
"""
import argparse
import json
import warnings

import numpy as np


def datasets():
    from sklearn import datasets as d
    return {"wine": d.load_wine(return_X_y=True), "breast_cancer": d.load_breast_cancer(return_X_y=True),
            "digits": d.load_digits(return_X_y=True), "diabetes": d.load_diabetes(return_X_y=True)}


def score(model, Xtr, ytr, Xte, yte, regression):
    from sklearn.metrics import accuracy_score, r2_score
    import fastbatch as fb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.fit(Xtr, ytr)
        except fb.DivergenceError:
            return float("nan")  # diverged: no score
        pred = model.predict(Xte)
    return r2_score(yte, pred) if regression else accuracy_score(yte, pred)


class TrainerModel:
    """fb.Trainer() with its defaults, as a fit/predict model."""

    def __init__(self, **kw):
        self.kw = kw

    def fit(self, X, y):
        import fastbatch as fb
        self.tr = fb.Trainer(**self.kw)
        self.tr.fit(X, y)
        return self

    def predict(self, X):
        return self.tr.predict(X)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the table as JSON here")
    args = ap.parse_args(argv)
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.preprocessing import StandardScaler
    from fastbatch.sklearn import FastBatchClassifier, FastBatchRegressor
    rows = []
    for name, (X, y) in datasets().items():
        regression = name == "diabetes"
        for scaled in (False, True):
            res = {"Trainer()": [], "estimator": [], "train CLI": [], "MLP": []}
            for seed in range(3):
                Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed,
                                                      stratify=None if regression else y)
                if scaled:
                    sc = StandardScaler().fit(Xtr)
                    Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
                ytr_t = ytr.astype(np.float64) if regression else ytr
                res["Trainer()"].append(score(TrainerModel(seed=seed), Xtr, ytr_t, Xte, yte, regression))
                est = FastBatchRegressor(seed=seed) if regression else FastBatchClassifier(seed=seed)
                res["estimator"].append(score(est, Xtr, ytr, Xte, yte, regression))
                # `fastbatch train`'s defaults: the Trainer's, with standardize on
                res["train CLI"].append(score(TrainerModel(seed=seed, standardize=True), Xtr, ytr_t, Xte, yte,
                                              regression))
                mlp = MLPRegressor(random_state=seed) if regression else MLPClassifier(random_state=seed)
                res["MLP"].append(score(mlp, Xtr, ytr, Xte, yte, regression))
            row = {"dataset": name, "inputs": "standardised" if scaled else "raw",
                   "metric": "R^2" if regression else "accuracy",
                   **{k: float(np.median(v)) for k, v in res.items()}}
            rows.append(row)
            print(f"{name:14s} {row['inputs']:12s} {row['metric']:8s} " +
                  "  ".join(f"{k} {row[k]:6.3f}" for k in res), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

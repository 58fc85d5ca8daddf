"""Labelled accuracy (top-1/top-5) of a classifier output, and the accuracy gate."""

from __future__ import annotations

import numpy as np


def topk_accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[str, float] | None:
    if logits.ndim != 2 or logits.shape[0] != len(labels) or logits.shape[1] < 2:
        return None
    top5 = np.argsort(logits, axis=1)[:, -min(5, logits.shape[1]):]
    return {"top1": float(np.mean(logits.argmax(1) == labels)),
            "top5": float(np.mean([label in row for label, row in zip(labels, top5, strict=True)])),
            "samples": int(len(labels))}


def accuracy_record(reference: list[np.ndarray], actual: list[np.ndarray], labels: np.ndarray | None,
                    tolerance) -> tuple[dict | None, list[str]]:
    """Accuracy of the first classifier-like output, against the reference's; failures of max_accuracy_drop."""
    if labels is None:
        return None, []
    for ref, act in zip(reference, actual, strict=True):
        ref_acc, act_acc = topk_accuracy(ref, labels), topk_accuracy(act, labels)
        if ref_acc and act_acc:
            drop = ref_acc["top1"] - act_acc["top1"]
            record = {"top1": act_acc["top1"], "top5": act_acc["top5"], "reference_top1": ref_acc["top1"],
                      "reference_top5": ref_acc["top5"], "top1_drop": drop, "samples": act_acc["samples"]}
            failures = []
            if tolerance is not None and tolerance.max_accuracy_drop is not None and drop > tolerance.max_accuracy_drop:
                failures.append(f"top-1 accuracy dropped {drop * 100:.2f} points "
                                f"({ref_acc['top1']:.4f} -> {act_acc['top1']:.4f}) > {tolerance.max_accuracy_drop * 100:.2f}")
            return record, failures
    return None, []

"""Evaluation metrics of GMOS-ROS (ROS-free, numpy/scipy; no torch, no GPU).

* MOS-I (the GMOS paper's protocol, identical numbers to the official ``benchmark_mos_i.py``):
  :func:`evaluate_mos_i_arrays`, :func:`evaluate_mos_i_folders`, :func:`aggregate_mos_i`.
* DAVIS 2017 J / F (multi-object MOS, UVOS, foreground/background): :func:`db_eval_iou`, :func:`f_measure`,
  :func:`db_statistics`, :func:`evaluate_davis_sequence`, :func:`evaluate_davis_folders`.
* MoCA detection success rate on boxes: :func:`success_rates`.
* Readers: :func:`read_label_png`, :func:`load_time_annotations` (GMOS-2K CSV bundled), :func:`resolve_prediction_dir`.
"""
from gmos_core.metrics.davis import (
    DavisAggregate,
    DavisSequenceResult,
    aggregate_davis,
    db_eval_iou,
    db_statistics,
    evaluate_davis_sequence,
    f_measure,
    seg2bmap,
)
from gmos_core.metrics.moca import SR_THRESHOLDS, box_iou, mask_to_box, success_rates
from gmos_core.metrics.mos_i import (
    MAX_OBJECTS,
    MOS_I_THRESHOLDS,
    MosIAggregate,
    MosIScores,
    MosISequenceResult,
    MotionScoreError,
    ObjectIdError,
    aggregate_mos_i,
    evaluate_mos_i_arrays,
    format_mos_i_report,
    frame_table,
    motion_matrix,
    score_mos_i_sequence,
)
from gmos_core.metrics.readers import (
    DEFAULT_TIME_ANNOTATION,
    MOS_I_DATASETS,
    EvaluationInputError,
    load_time_annotations,
    read_label_png,
    resolve_prediction_dir,
)
from gmos_core.metrics.runner import DavisReport, MosIReport, evaluate_davis_folders, evaluate_mos_i_folders

__all__ = [
    "aggregate_davis",
    "aggregate_mos_i",
    "box_iou",
    "DavisAggregate",
    "DavisReport",
    "DavisSequenceResult",
    "db_eval_iou",
    "db_statistics",
    "DEFAULT_TIME_ANNOTATION",
    "evaluate_davis_folders",
    "evaluate_davis_sequence",
    "evaluate_mos_i_arrays",
    "evaluate_mos_i_folders",
    "EvaluationInputError",
    "f_measure",
    "format_mos_i_report",
    "frame_table",
    "load_time_annotations",
    "mask_to_box",
    "MAX_OBJECTS",
    "MOS_I_DATASETS",
    "MOS_I_THRESHOLDS",
    "MosIAggregate",
    "MosIReport",
    "MosIScores",
    "MosISequenceResult",
    "motion_matrix",
    "MotionScoreError",
    "ObjectIdError",
    "read_label_png",
    "resolve_prediction_dir",
    "score_mos_i_sequence",
    "seg2bmap",
    "SR_THRESHOLDS",
    "success_rates",
]

"""Step 3b, export: the distilled student in the faster runtimes of ``export.formats``.

Reads ``paths.student`` and, for the int8 activation ranges, ``export.calibration_texts`` training
texts of ``paths.prepared`` (never an evaluation text). Writes ``paths.exports``: one Sentence
Transformers folder per format (:mod:`distill.runtimes`) and ``manifest.json``, which records the
fingerprint of the student they were made from, so evaluate refuses exports of another student.
The folder is replaced whole, so a failed export leaves the previous one intact.
"""

from __future__ import annotations

import logging
from pathlib import Path

from distill.atomic import atomic_dir, write_json
from distill.config.schema import Params
from distill.errors import DataError
from distill.models import fingerprint, load_model
from distill.prompts import prompt_for
from distill.readers import EXPORTS_MANIFEST, load_corpus
from distill.runtimes import EXPORT_FORMATS, disk_size_mb, export_student
from distill.sampling import spread_sample

log = logging.getLogger(__name__)


def run(params: Params) -> dict:
    student_path = Path(params.paths.student)
    if not (student_path / "modules.json").is_file():
        raise DataError(f"{student_path} holds no trained student: run the train step first")
    student = load_model(str(student_path), field="paths.student")
    corpus = load_corpus(params.paths.prepared)
    # Calibrated as the student is served on the corpus: training passages with their prompt.
    prompt = prompt_for(params.student.prompts, params.corpus.text_type)
    sample = spread_sample(corpus[corpus["split"] == "train"], params.export.calibration_texts, params.seed,
                           "export/calibration")
    calibration = [prompt + text for text in sample["text"]]
    formats = params.export.formats
    with atomic_dir(params.paths.exports) as staging:
        folders = export_student(student_path, student, formats, staging, calibration) if formats else {}
        manifest = {
            "student": str(student_path),
            "student_fingerprint": fingerprint(student),
            "calibration_texts": len(calibration) if "openvino_int8" in formats else 0,
            "formats": {fmt: {"folder": fmt, "runtime": EXPORT_FORMATS[fmt][0], "file": EXPORT_FORMATS[fmt][1],
                              "size_mb": round(disk_size_mb(folder), 2)} for fmt, folder in folders.items()},
        }
        write_json(staging / EXPORTS_MANIFEST, manifest)
    log.info("exported %s to %s", ", ".join(formats) or "nothing", params.paths.exports)
    return manifest

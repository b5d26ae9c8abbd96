"""The static student (student.init: static) end to end on a tiny teacher: the label step distils the
teacher's vocabulary (Model2Vec), train regresses it onto the teacher's embeddings through the
projection, evaluate judges it against that plain distillation."""

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import StaticEmbedding

from distill.config.loader import load_params
from distill.config.schema import StaticStudentConfig
from distill.errors import DataError
from distill.models import load_model, prune_layers
from distill.static import distil_static, load_static_student, sif_weights, static_folder
from distill.steps import evaluate, label, prepare, train
from tests.conftest import write_tiny_params


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory, minilm):
    """The first layer of all-MiniLM-L6-v2: trained weights (a random teacher has nothing to distil) and
    its 30k-token vocabulary at a sixth of the full model's cost."""
    path = tmp_path_factory.mktemp("static-teacher")
    prune_layers(minilm, [0]).save(str(path))
    return path


def test_distillation_is_the_teachers_vocabulary_through_pca_and_sif(tiny_teacher):
    teacher = load_model(str(tiny_teacher), field="teacher.model")
    static = distil_static(teacher, StaticStudentConfig(pca_dims=16))
    embedding = static[0]
    assert isinstance(embedding, StaticEmbedding) and embedding.embedding.weight.shape == (len(teacher.tokenizer), 16)
    # SIF: frequent (low-rank) tokens weigh less than rare ones
    weights = sif_weights(1000, 1e-4)
    assert weights[0] < weights[500] < weights[-1] <= 1
    # A text is the normalised mean of its tokens' rows
    ids = teacher.tokenizer("the match", add_special_tokens=False)["input_ids"]
    rows = embedding.embedding.weight[ids].detach().numpy().mean(axis=0)
    np.testing.assert_allclose(static.encode(["the match"])[0], rows / np.linalg.norm(rows), atol=1e-5)
    with pytest.raises(DataError, match=r"student\.static\.pca_dims 512 is above the teacher's 384 hidden dimensions"):
        distil_static(teacher, StaticStudentConfig(pca_dims=512))


def test_static_student_trains_toward_the_teacher_and_is_judged_against_its_plain_distillation(tiny_teacher, tmp_path):
    params = load_params(write_tiny_params(
        tmp_path,
        teacher={"model": str(tiny_teacher), "max_seq_length": 128},
        student={"init": "static", "static": {"pca_dims": 16}, "drop_projection": True},
        train={"objectives": {"cosine": 1.0, "margin_mse": 0.0}, "matryoshka_dims": [], "mode": "asymmetric",
               "learning_rate": 0.05, "epochs": 3, "batch_size": 16},
    ))
    prepare.run(params)
    teacher = load_model(str(tiny_teacher), field="teacher.model")
    with pytest.raises(DataError, match=r"no distillation of this teacher and student\.static .*run the label step"):
        load_static_student(params.paths.teacher_cache, teacher, params.student.static)
    label.run(params)
    assert (static_folder(params.paths.teacher_cache, teacher, params.student.static) / "modules.json").is_file()
    train.run(params)
    student = SentenceTransformer(params.paths.student)
    # The projection into the teacher's space was a training head (tokenlearn's recipe): dropped.
    assert [type(m).__name__ for m in student] == ["StaticEmbedding", "Normalize"]
    plain = load_static_student(params.paths.teacher_cache, teacher, params.student.static)
    assert not np.allclose(student[0].embedding.weight.detach().numpy(), plain[0].embedding.weight.detach().numpy())
    flat = evaluate.run(params)
    # Regressed onto the teacher's embeddings, it follows the teacher's similarities more closely than
    # the plain distillation it started from.
    assert flat["student/fid/sim_spearman"] > flat["baseline/fid/sim_spearman"] + 1, flat
    assert flat["student/speedup"] > 1 and "student/vs_baseline/low" in flat

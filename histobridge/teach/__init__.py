"""Teaching material from a project, a classifier and a class-conditional generator: blinded quiz
forms with an answer key and scoring, teaching sheets per class pair, and a QuPath project of
synthetic mosaics. See docs/teaching.md."""

from histobridge.teach.build import TeachResult, TeachSettings, make_teaching
from histobridge.teach.quiz import QuizPlan
from histobridge.teach.score import ScoreReport, score_answers

__all__ = ["QuizPlan", "ScoreReport", "TeachResult", "TeachSettings", "make_teaching", "score_answers"]

"""Data: the bundled scikit-learn digits set and synthetic generators."""

from multilens.data.digits import DigitsSplit, load_digits_split
from multilens.data.family import FamilySpec
from multilens.data.teacher_student import TeacherStudentTask

__all__ = ["FamilySpec", "DigitsSplit", "load_digits_split", "TeacherStudentTask"]

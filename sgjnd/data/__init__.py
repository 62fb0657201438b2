"""JND datasets: readers of MCL-JCI, KonJND-1k and proxy labels, label aggregation, and splits by source image.

Needs numpy and OpenCV only (no torch).
"""

from sgjnd.data.datasets import DatasetError as DatasetError
from sgjnd.data.datasets import JNDDataset as JNDDataset
from sgjnd.data.datasets import PatchLabel as PatchLabel
from sgjnd.data.datasets import Source as Source
from sgjnd.data.datasets import open_dataset as open_dataset
from sgjnd.data.datasets import read_konjnd as read_konjnd
from sgjnd.data.datasets import read_mcl_jci as read_mcl_jci
from sgjnd.data.datasets import read_proxy_labels as read_proxy_labels
from sgjnd.data.labels import LabelConfig as LabelConfig
from sgjnd.data.labels import jnd_from_samples as jnd_from_samples
from sgjnd.data.labels import jnd_from_sur as jnd_from_sur
from sgjnd.data.splits import group_kfold as group_kfold
from sgjnd.data.splits import split_dataset as split_dataset

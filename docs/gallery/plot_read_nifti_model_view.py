"""
Read a NIfTI volume and see it as a prior sees it
=================================================

:func:`medldm.io.load` reads an image with its geometry: the pixels in physical units and
a 4x4 affine from voxel indices to RAS+ millimetres. This volume, a small brain from
nibabel's test data, is stored left-to-right *reversed* (its first array axis grows
towards L). Shown in storage order, the left hemisphere is on the right of the picture.

The model view (:mod:`medldm.problems.model_view`) is the one mapping that training, the
benchmark and ``medldm-recon`` use between an image and a prior's space: slices are
reoriented to RAS+ and laid out with rows growing towards anterior and columns towards
right, whatever order the file stored them in.
"""

import os

import matplotlib.pyplot as plt
import nibabel.testing
import numpy as np

from medldm.io import load
from medldm.problems.model_view import display_origin, model_slices

path = os.path.join(nibabel.testing.data_path, "anatomical.nii")
volume = load(path)
print(volume.summary())

# %%
# The storage order and the affine's axis codes: ``L, A, S`` means the array's first
# axis grows towards the left.
import nibabel as nib  # noqa: E402

print("array axes point to:", "".join(nib.aff2axcodes(volume.affine)))
print("array shape:", volume.array.shape)

# %%
# Three central axial slices in the model view, next to the same slices as stored. A
# model-view slice is ``(rows, cols)`` with rows towards anterior, so it is drawn with
# ``origin="lower"`` to put anterior at the top. One voxel near the array's first column
# is marked (a marker volume sent through the same mapping): in storage order it is on
# the picture's left; the model view puts it on the right, where the subject's right is.
marker = np.zeros(volume.array.shape, np.float32)
marker[6, 30, :] = 1.0  # array index x=6 (6 voxels from the first column), y=30
marked = dict(model_slices(volume.replace(array=marker), 3, plane="axial"))

slices = model_slices(volume, 3, plane="axial")
first_axis = nib.aff2axcodes(volume.affine)[0]  # where the array's x axis points
opposite = {"L": "R", "R": "L"}[first_axis]
fig, axes = plt.subplots(2, 3, figsize=(7.5, 5.6), layout="constrained")
for column, (index, pixels) in enumerate(slices):
    stored = np.asarray(volume.array)[:, :, index]  # [x, y] as in the file
    axes[0, column].imshow(stored.T, cmap="gray", origin="lower")
    axes[0, column].plot(6, 30, "o", color="red", markersize=5)
    axes[0, column].set_title(f"stored, z={index}")
    row, col = np.unravel_index(np.argmax(marked[index]), marked[index].shape)
    axes[1, column].imshow(pixels, cmap="gray", origin=display_origin(from_volume=True))
    axes[1, column].plot(col, row, "o", color="red", markersize=5)
    axes[1, column].set_title(f"model view, z={index}")
    for ax, (left, right) in ((axes[0, column], (opposite, first_axis)), (axes[1, column], "LR")):
        ax.text(0.02, 0.5, left, transform=ax.transAxes, color="yellow", va="center")
        ax.text(0.98, 0.5, right, transform=ax.transAxes, color="yellow", va="center", ha="right")
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
axes[0, 0].set_ylabel(f"file order\n(columns towards {first_axis})")
axes[1, 0].set_ylabel("model view\n(columns towards R)")
plt.show()

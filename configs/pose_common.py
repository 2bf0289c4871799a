"""SimpleBaseline's pose schedule on top of ``train_common`` (pose-notes.md 1.2), shared by the MPII and COCO
configs: Adam 1e-3 for 140 epochs, x0.1 at epochs 90 and 120 (the three stages 90 + 30 + 20), no weight decay
(the reference's yaml sets 1e-4 but never passes it to Adam), no gradient clipping, batch 32, the flip test in
evaluation. The searched decoder replaces the reference's three deconvolutions; heatmaps are at stride 4 for
every genotype (``fdn.tasks.Pose``) and the auxiliary heads train with the same heatmap loss.
"""

from configs import train_common
from fdn.pose import joints


def pose_config(dataset: str):
    """The schedule for ``dataset``'s joints (``fdn.pose.joints``): one heatmap per joint, its limbs in pictures,
    its joint names in ``fdn.evaluate``'s table (the checkpoint's class names, as ``fdn.data.catalog`` gives)."""
    skeleton = joints.skeleton(dataset)
    c = train_common.train_config()
    c.task = "pose"
    c.data.name = dataset
    c.data.crop_width = 0  # 0: the dataset's SimpleBaseline aspect (fdn.data.pose_pipeline.train_crop)
    c.model.num_classes = skeleton.num_joints
    c.eval.skeleton = skeleton.limbs
    c.data.batch_size = 32
    c.data.worker_count = 4
    c.eval.batch_size = 32
    c.eval.min_side = 0
    c.eval.every_epochs = 5
    c.eval.flip_test = True
    c.teacher.weight = 0.0  # a teacher would have to be a pose model of the same joints
    c.optim.optimizer = "adam"
    c.optim.stage_epochs = (90, 30, 20)
    c.optim.enc_lrs = (1e-3, 1e-4, 1e-5)
    c.optim.dec_lrs = (1e-3, 1e-4, 1e-5)
    c.optim.weight_decay = 0.0
    c.optim.grad_clip = 0.0
    c.optim.reference_batch = 32
    c.optim.scale_lr_with_batch = False  # the reference's 1e-3 is for 32 per GPU x 4 GPUs; kept as is
    return c


def tiny(c):
    """Seconds, for tests: agg 8, crops 32 pixels high (as wide as the full crops' aspect), 1 + 1 + 1 epochs of 2
    steps."""
    h, w = c.eval.crop_size
    c.data.worker_count = 0
    c.model.agg_size = 8
    c.data.batch_size = 2
    c.data.crop_size = 32
    c.eval.crop_size = (32, int(round(32 * w / h)))
    c.eval.batch_size = 2
    c.optim.stage_epochs = (1, 1, 1)
    c.optim.steps_per_epoch = 2
    c.eval.every_epochs = 1
    c.progress = False

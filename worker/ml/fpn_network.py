"""The FPN detector network and its losses (imports TensorFlow/Keras; load lazily).

Only standard Keras layers are used, so ``model.keras`` files load without custom objects and the
LiteRT converter sees plain convolutions.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

# BatchNorm momentum 0.9: Keras' 0.999 makes the moving statistics lag far behind in short
# (hundreds of steps) trainings from scratch, so inference would use stale statistics.
BN_MOMENTUM = 0.9
# Prior probability of a foreground anchor at start (RetinaNet): keeps the focal loss of the
# thousands of background anchors from swamping the first steps.
PRIOR_PROBABILITY = 0.01


def _conv_bn_relu(x, channels: int, stride: int, name: str):
    x = layers.Conv2D(
        channels, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_fpn(
    input_size: int,
    num_classes: int,
    anchors_per_location: int,
    backbone_width: int = 16,
    fpn_channels: int = 64,
) -> keras.Model:
    """Backbone (stride 2..32) → FPN (P3..P5) → shared heads → (B, N_anchors, 4 + K) raw output.

    The output holds box deltas (4) and class logits (K) per anchor; decoding and NMS happen in
    numpy (``worker.ml.boxes.postprocess``) so the Keras and LiteRT paths share one decoder.
    """
    inputs = keras.Input((input_size, input_size, 3), name="image")  # float 0..255
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    features = []
    for stage, multiplier in enumerate((1, 2, 4, 8, 16), start=1):
        x = _conv_bn_relu(x, backbone_width * multiplier, 2, f"stage{stage}_down")
        x = _conv_bn_relu(x, backbone_width * multiplier, 1, f"stage{stage}_mix")
        features.append(x)
    c3, c4, c5 = features[2], features[3], features[4]  # strides 8, 16, 32

    lateral5 = layers.Conv2D(fpn_channels, 1, name="lateral5")(c5)
    lateral4 = layers.Conv2D(fpn_channels, 1, name="lateral4")(c4)
    lateral3 = layers.Conv2D(fpn_channels, 1, name="lateral3")(c3)
    top_down4 = layers.Add(name="topdown4")(
        [lateral4, layers.UpSampling2D(2, name="up5")(lateral5)]
    )
    top_down3 = layers.Add(name="topdown3")(
        [lateral3, layers.UpSampling2D(2, name="up4")(top_down4)]
    )
    pyramid = [
        layers.Conv2D(fpn_channels, 3, padding="same", name=f"smooth{level}")(tensor)
        for level, tensor in ((3, top_down3), (4, top_down4), (5, lateral5))
    ]

    # Heads are shared across levels (same layer objects), as in RetinaNet.
    class_tower = [
        layers.Conv2D(fpn_channels, 3, padding="same", activation="relu", name=f"class_tower{i}")
        for i in range(2)
    ]
    box_tower = [
        layers.Conv2D(fpn_channels, 3, padding="same", activation="relu", name=f"box_tower{i}")
        for i in range(2)
    ]
    prior_bias = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    class_out = layers.Conv2D(
        anchors_per_location * num_classes,
        3,
        padding="same",
        name="class_logits",
        bias_initializer=keras.initializers.Constant(prior_bias),
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
    )
    box_out = layers.Conv2D(
        anchors_per_location * 4,
        3,
        padding="same",
        name="box_deltas",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
    )
    class_outputs, box_outputs = [], []
    for level, feature in zip((3, 4, 5), pyramid, strict=True):
        c, b = feature, feature
        for conv in class_tower:
            c = conv(c)
        for conv in box_tower:
            b = conv(b)
        class_outputs.append(
            layers.Reshape((-1, num_classes), name=f"class_flat{level}")(class_out(c))
        )
        box_outputs.append(layers.Reshape((-1, 4), name=f"box_flat{level}")(box_out(b)))
    boxes = layers.Concatenate(axis=1, name="boxes")(box_outputs)
    classes = layers.Concatenate(axis=1, name="classes")(class_outputs)
    raw = layers.Concatenate(axis=-1, name="raw")([boxes, classes])
    return keras.Model(inputs, raw, name="fpn_detector")


def detection_loss(raw, class_targets, box_targets, positive, valid, alpha=0.25, gamma=2.0):
    """Focal loss over valid anchors + Huber box loss over positives, both / number of positives."""
    box_pred = raw[..., :4]
    logits = raw[..., 4:]
    probabilities = tf.sigmoid(logits)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=class_targets, logits=logits)
    p_t = probabilities * class_targets + (1 - probabilities) * (1 - class_targets)
    alpha_t = alpha * class_targets + (1 - alpha) * (1 - class_targets)
    focal = alpha_t * tf.pow(1.0 - p_t, gamma) * cross_entropy
    valid = tf.cast(valid, tf.float32)
    positive = tf.cast(positive, tf.float32)
    normaliser = tf.maximum(tf.reduce_sum(positive), 1.0)
    class_loss = tf.reduce_sum(tf.reduce_sum(focal, axis=-1) * valid) / normaliser
    difference = tf.abs(box_pred - box_targets)
    huber = tf.where(difference < 1.0, 0.5 * difference**2, difference - 0.5)
    box_loss = tf.reduce_sum(tf.reduce_sum(huber, axis=-1) * positive) / normaliser
    return class_loss, box_loss


def make_train_step(model: keras.Model, optimizer, clip_norm: float = 10.0):
    """A compiled (graph, no XLA: XLA was 5× slower on this CPU) training step."""

    @tf.function(reduce_retracing=True)
    def train_step(images, class_targets, box_targets, positive, valid):
        with tf.GradientTape() as tape:
            raw = model(images, training=True)
            class_loss, box_loss = detection_loss(raw, class_targets, box_targets, positive, valid)
            total = class_loss + box_loss
        gradients = tape.gradient(total, model.trainable_variables)
        gradients, _ = tf.clip_by_global_norm(gradients, clip_norm)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return total, class_loss, box_loss

    return train_step


def make_forward(model: keras.Model):
    # A batch dimension of None: one graph for every batch size (no retracing per size).
    signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]

    @tf.function(input_signature=signature)
    def forward(images):
        return model(images, training=False)

    return forward


# Backbone stages whose globally pooled features describe an image's appearance (light, colour,
# texture at three scales) for the novelty measure (``FPNModel.feature_shift``).
APPEARANCE_LAYERS = ("stage3_mix_relu", "stage4_mix_relu", "stage5_mix_relu")


def make_forward_with_appearance(model: keras.Model):
    """Like ``make_forward`` but also returns the pooled backbone features, in the same pass."""
    pooled = [
        layers.GlobalAveragePooling2D()(model.get_layer(name).output) for name in APPEARANCE_LAYERS
    ]
    both = keras.Model(model.inputs, [model.outputs[0], layers.Concatenate()(pooled)])
    signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]

    @tf.function(input_signature=signature)
    def forward(images):
        return both(images, training=False)

    return forward


def make_loss_fn(model: keras.Model):
    @tf.function(reduce_retracing=True)
    def loss_fn(images, class_targets, box_targets, positive, valid):
        raw = model(images, training=False)
        class_loss, box_loss = detection_loss(raw, class_targets, box_targets, positive, valid)
        return class_loss + box_loss

    return loss_fn

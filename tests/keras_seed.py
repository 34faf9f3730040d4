"""A seed article's Keras model (make_circles, Dense(50, relu) -> Dense(1, sigmoid), SGD
with momentum, binary cross-entropy) trained with Keras's own loss and with fastloss's, on
the Keras backend named by KERAS_BACKEND. Run as a script by test_keras_adapter.py; prints
one JSON line."""

import json
import sys

import keras
from sklearn.datasets import make_circles

import fastloss.keras as flk


def train(loss, epochs):
    keras.utils.set_random_seed(1)
    X, y = make_circles(n_samples=2000, noise=0.1, random_state=1)
    X, y = X.astype("float32"), y.astype("float32")
    model = keras.Sequential([
        keras.Input((2,)),
        keras.layers.Dense(50, activation="relu", kernel_initializer="he_uniform"),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(loss=loss, optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9), metrics=["accuracy"])
    history = model.fit(X[:1000], y[:1000], epochs=epochs, batch_size=32, verbose=0, shuffle=False)
    _, accuracy = model.evaluate(X[1000:], y[1000:], verbose=0)
    return history.history["loss"], float(accuracy)


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    theirs = train(keras.losses.BinaryCrossentropy(), epochs)
    ours = train(flk.BinaryCrossEntropy(), epochs)
    print(json.dumps({"backend": keras.backend.backend(), "keras": theirs, "fastloss": ours}))


if __name__ == "__main__":
    main()

# The one table of codes shared by the kernel (cimport) and Python (``fastbatch._codes``).
# A name's position in its enum is its code; Python derives the choice lists from these.

cpdef enum Activation:
    IDENTITY = 0
    RELU = 1
    TANH = 2
    SIGMOID = 3

cpdef enum Loss:
    MSE = 0
    BINARY_CROSSENTROPY = 1
    CROSS_ENTROPY = 2

cpdef enum Optimizer:
    SGD = 0
    ADAM = 1
    ADAMW = 2
    RMSPROP = 3

# what a call of train_steps ended with
cpdef enum Status:
    DONE = 0
    STOPPED = 1
    NONFINITE = 2
    TIME_UP = 3
    READ_ERROR = 4
    BAD_INPUT = 5      # a record the kernel read holds a value it cannot train on
    BLOWN_UP = 6       # a step's loss, finite, beyond the limit the call was given: the run has diverged

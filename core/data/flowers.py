"""The flowers dataset: its five classes, and where the real photos are downloaded from.

The one place these are named: the download checks the archive holds these classes, and the built-in
sample draws the same five.
"""

FLOWER_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")

FLOWERS_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
FLOWERS_SIZE = 228_813_984  # bytes of the .tgz at FLOWERS_URL
FLOWERS_PHOTOS = 3_670

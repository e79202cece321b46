"""The flowers dataset: its five classes, where the real photos are downloaded from, and how to check them.

The one place these are named: the download checks the archive's size and SHA-256 and that it holds these
classes, and the built-in sample draws the same five.
"""

FLOWER_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")

FLOWERS_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
FLOWERS_SIZE = 228_813_984  # bytes of the .tgz at FLOWERS_URL
# SHA-256 of the .tgz at FLOWERS_URL, as tensorflow/datasets records it (url_checksums/tf_flowers.txt)
FLOWERS_SHA256 = "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"
FLOWERS_PHOTOS = 3_670

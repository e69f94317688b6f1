"""The gymnasium namespace of prefrl's task variants: ids read ``prefrl/<Task>-v0``."""

NAMESPACE = "prefrl"

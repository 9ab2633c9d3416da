import time


def chaos_safe(seconds: float) -> str:
    time.sleep(seconds)
    return "safe done"


def chaos_unsafe(seconds: float, marker: str) -> str:
    # The side effect comes first: a kill during the sleep leaves it done, and a second run of
    # the tool would show as a second line.
    with open(marker, "a", encoding="utf-8") as out:
        out.write("ran\n")
    time.sleep(seconds)
    return "unsafe done"

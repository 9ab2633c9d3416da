import tests.journey_meeting as meeting


def meet(me: str, partner: str, instance: str) -> dict:
    return meeting.meet(me, partner, instance)

# Written for streamguard's tests (not NeMo's file): the action NeMo's
# with_custom_action config executes, served by NeMo's actions server.
from nemoguardrails.actions import action


@action()
async def check_service_status():
    return "online"

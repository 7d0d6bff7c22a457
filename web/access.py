"""Who may reach a view, declared next to it: one rule per view function.

    @blueprint.get("/status.json")
    @access.data
    def data(): ...

The request guards (web/guards.py) read the rule from the view function itself, so a new route
cannot be forgotten in a list elsewhere. A view that declares no rule is refused like `data`
(401 without an unlocked session), and tests/web/test_urlmap.py fails naming it.

  page      needs an unlocked session; a locked browser is sent to the login page
  data      needs an unlocked session; locked, it answers 401 (scripts, media, JSON: a redirect
            would hand them the login page's HTML), a POST before its CSRF check too
  recovery  a page that a new owner may use before confirming they saved the recovery key
  public    needs no session (the login page); before set-up it redirects to set-up like any page
  setup     needs no session and is served before set-up too: the set-up pages (which refuse by
            themselves once the device is set up) and the static files they use
  background  like `data`, but what a page fetches by itself on a timer or holds open (status
            polling, event and live streams, the tuner's overlay): it does not count as the
            person being active, so a page left open still locks after `idle_timeout_s`

Any request may also say that it is background with the `X-Doorbell-Background: 1` header (the
tuner's keep-alive tick does, while the same route counts when the person moves a slider). The
header can only make a session lock sooner, never keep one open, so a client cannot abuse it.

`rule.form_before_session` is the same rule for a form posted before any session exists (so
before any CSRF token): only the same-origin check applies to it.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

ATTRIBUTE = "access_rule"


@dataclass(frozen=True)
class Rule:
    name: str
    needs_session: bool
    redirect_when_locked: bool = False  # GET without a session: login page (else 401)
    before_setup: bool = False  # served while the device has no household member yet
    during_recovery: bool = False  # served while the recovery key is still unconfirmed
    csrf_token: bool = True  # state changes must carry the session's CSRF token
    counts_as_activity: bool = True  # False: the idle timeout runs on through these requests

    def __call__(self, view: Callable) -> Callable:
        declared = getattr(view, ATTRIBUTE, None)
        if declared is not None and declared != self:
            raise TypeError(f"{view.__qualname__} declares two access rules: "
                            f"{declared.name} and {self.name}.")
        setattr(view, ATTRIBUTE, self)
        return view

    @property
    def form_before_session(self) -> "Rule":
        if self.needs_session:
            raise TypeError(f"A {self.name} view has a session, so its forms carry a CSRF token.")
        return replace(self, name=f"{self.name}.form_before_session", csrf_token=False)


page = Rule("page", needs_session=True, redirect_when_locked=True)
data = Rule("data", needs_session=True)
recovery = Rule("recovery", needs_session=True, redirect_when_locked=True, during_recovery=True)
background = Rule("background", needs_session=True, counts_as_activity=False)
public = Rule("public", needs_session=False)
setup = Rule("setup", needs_session=False, before_setup=True)

# What a view without a declared rule gets: fail closed, and in a way scripts notice (401).
UNDECLARED = replace(data, name="undeclared")


def declared_rule(view: Callable | None) -> Rule | None:
    return getattr(view, ATTRIBUTE, None)


def rule_of(view: Callable | None) -> Rule:
    return declared_rule(view) or UNDECLARED

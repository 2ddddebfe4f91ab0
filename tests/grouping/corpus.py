# ruff: noqa: E501 -- real-world paths and trace lines read best unbroken
"""The grouping corpus: real-world-shaped notices, each labelled with the group a person would put it in.

Every notice is the body its protocol's clients send, decoded by that protocol's own decoder
(tests/grouping/builders.py), so the verdicts hold for what the parsers really make. Two notices with the same ``group`` label must get the same
fingerprint; two with different labels must not. The cases are the ones users complain about:
moved lines, deploys that change release directories and asset hashes, gem/package versions in
library paths, messages full of ids, the same bug reported by different clients, generated names
(proxies, lambdas, async state machines, template methods), recursion depth, chains whose cause
differs, and different bugs that share a class, a message or every library frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.model import Notice
from tests.grouping.builders import (
    airbrake,
    crashlog,
    exceptioner,
    exceptionless,
    exceptionless_simple,
    hoptoad,
    sentry,
)


@dataclass(frozen=True)
class Case:
    name: str  # unique, says what the notice is
    group: str  # same label = same error
    notice: Notice


CORPUS: list[Case] = []


def case(name: str, group: str, notice: Notice) -> None:
    CORPUS.append(Case(name, group, notice))


# =====================================================================================================
# Ruby (Exceptioner backtrace lines; CrashLog {file, number, method})
# =====================================================================================================

RAILS_6 = [
    "[GEM_ROOT]/gems/actionpack-6.0.3/lib/action_controller/metal/basic_implicit_render.rb:6:in `send_action'",
    "[GEM_ROOT]/gems/actionpack-6.0.3/lib/abstract_controller/base.rb:195:in `process_action'",
    "[GEM_ROOT]/gems/activesupport-6.0.3/lib/active_support/callbacks.rb:135:in `run_callbacks'",
    "[GEM_ROOT]/gems/rack-2.0.8/lib/rack/etag.rb:27:in `call'",
    "[GEM_ROOT]/gems/puma-4.3.5/lib/puma/server.rb:706:in `handle_request'",
]
RAILS_7_ABSOLUTE = [  # a later deploy: newer gems, one more middleware, no [GEM_ROOT] filter
    "/srv/shop/shared/bundle/ruby/3.2.0/gems/actionpack-7.0.4/lib/action_controller/metal/"
    "basic_implicit_render.rb:6:in `send_action'",
    "/srv/shop/shared/bundle/ruby/3.2.0/gems/actionpack-7.0.4/lib/abstract_controller/base.rb:215:in `process_action'",
    "/srv/shop/shared/bundle/ruby/3.2.0/gems/activesupport-7.0.4/lib/active_support/callbacks.rb:107:in "
    "`run_callbacks'",
    "/srv/shop/shared/bundle/ruby/3.2.0/gems/rack-2.2.3/lib/rack/tempfile_reaper.rb:15:in `call'",
    "/srv/shop/shared/bundle/ruby/3.2.0/gems/rack-2.2.3/lib/rack/etag.rb:27:in `call'",
    "/srv/shop/shared/bundle/ruby/3.2.0/gems/puma-5.6.5/lib/puma/request.rb:76:in `handle_request'",
]
RAILS_7_LABELS = [  # Ruby 3.4 prints owner#method labels in single quotes
    "[GEM_ROOT]/gems/actionpack-7.1.3/lib/action_controller/metal/basic_implicit_render.rb:6:in "
    "'ActionController::BasicImplicitRender#send_action'",
    "[GEM_ROOT]/gems/actionpack-7.1.3/lib/abstract_controller/base.rb:226:in 'AbstractController::Base#process_action'",
    "[GEM_ROOT]/gems/puma-6.4.2/lib/puma/request.rb:100:in 'Puma::Request#handle_request'",
]

case(
    "ruby/exceptioner",
    "ruby-user-full-name",
    exceptioner(
        "NoMethodError",
        "undefined method `upcase' for nil:NilClass",
        [
            "[PROJECT_ROOT]/app/models/user.rb:42:in `full_name'",
            "[PROJECT_ROOT]/app/controllers/users_controller.rb:10:in `show'",
            *RAILS_6,
        ],
    ),
)
case(
    "ruby/exceptioner, lines moved, other message",
    "ruby-user-full-name",
    exceptioner(
        "NoMethodError",
        "undefined method `upcase' for nil",
        [
            "[PROJECT_ROOT]/app/models/user.rb:47:in `full_name'",
            "[PROJECT_ROOT]/app/controllers/users_controller.rb:12:in `show'",
            *RAILS_6,
        ],
    ),
)
case(
    "ruby/exceptioner, Capistrano release dir, newer gems",
    "ruby-user-full-name",
    exceptioner(
        "NoMethodError",
        "undefined method `upcase' for nil:NilClass",
        [
            "/srv/shop/releases/20240301120000/app/models/user.rb:42:in `full_name'",
            "/srv/shop/releases/20240301120000/app/controllers/users_controller.rb:10:in `show'",
            *RAILS_7_ABSOLUTE,
        ],
    ),
)
case(
    "ruby/exceptioner, Ruby 3.4 labels",
    "ruby-user-full-name",
    exceptioner(
        "NoMethodError",
        "undefined method 'upcase' for nil",
        [
            "[PROJECT_ROOT]/app/models/user.rb:42:in 'User#full_name'",
            "[PROJECT_ROOT]/app/controllers/users_controller.rb:10:in 'UsersController#show'",
            *RAILS_7_LABELS,
        ],
    ),
)
case(
    "ruby/crashlog, project_root stripped",
    "ruby-user-full-name",
    crashlog(
        "NoMethodError",
        "undefined method `upcase' for nil:NilClass",
        [
            {"file": "/home/deploy/shop/current/app/models/user.rb", "number": 44, "method": "full_name"},
            {
                "file": "/home/deploy/shop/current/app/controllers/users_controller.rb",
                "number": 10,
                "method": "show",
            },
            {
                "file": "/home/deploy/shop/shared/bundle/ruby/3.1.0/gems/actionpack-7.0.4/lib/abstract_controller/base.rb",
                "number": 215,
                "method": "process_action",
            },
        ],
        project_root="/home/deploy/shop/current",
    ),
)
case(
    "ruby/crashlog, Ruby 3.4 method labels",
    "ruby-user-full-name",
    crashlog(
        "NoMethodError",
        "undefined method 'upcase' for nil",
        [
            {"file": "/app/app/models/user.rb", "number": 42, "method": "User#full_name"},
            {
                "file": "/app/app/controllers/users_controller.rb",
                "number": 10,
                "method": "UsersController#show",
            },
            {
                "file": "/usr/local/bundle/gems/puma-6.4.2/lib/puma/request.rb",
                "number": 100,
                "method": "Puma::Request#handle_request",
            },
        ],
        project_root="/app",
    ),
)

# Same class, same message, different app code: a different bug.
case(
    "ruby/exceptioner, same class+message in Order#total",
    "ruby-order-total",
    exceptioner(
        "NoMethodError",
        "undefined method `upcase' for nil:NilClass",
        [
            "[PROJECT_ROOT]/app/models/order.rb:88:in `total'",
            "[PROJECT_ROOT]/app/controllers/orders_controller.rb:21:in `show'",
            *RAILS_6,
        ],
    ),
)
case(
    "ruby/crashlog, Order#total",
    "ruby-order-total",
    crashlog(
        "NoMethodError",
        "undefined method `upcase' for nil:NilClass",
        [
            {"file": "/app/app/models/order.rb", "number": 91, "method": "total"},
            {"file": "/app/app/controllers/orders_controller.rb", "number": 21, "method": "show"},
        ],
        project_root="/app",
    ),
)

# Namespaced controllers share file and method names: only the directory tells them apart.
case(
    "ruby/exceptioner, Admin::UsersController#index",
    "ruby-admin-users-index",
    exceptioner(
        "NoMethodError",
        "undefined method `each' for nil:NilClass",
        [
            "[PROJECT_ROOT]/app/controllers/admin/users_controller.rb:8:in `index'",
            *RAILS_6,
        ],
    ),
)
case(
    "ruby/exceptioner, Admin::UsersController#index moved",
    "ruby-admin-users-index",
    exceptioner(
        "NoMethodError",
        "undefined method `each' for nil:NilClass",
        [
            "[PROJECT_ROOT]/app/controllers/admin/users_controller.rb:11:in `index'",
            *RAILS_6,
        ],
    ),
)
case(
    "ruby/exceptioner, UsersController#index",
    "ruby-users-index",
    exceptioner(
        "NoMethodError",
        "undefined method `each' for nil:NilClass",
        [
            "[PROJECT_ROOT]/app/controllers/users_controller.rb:8:in `index'",
            *RAILS_6,
        ],
    ),
)

# Rails compiles templates into methods whose names end in a per-boot hash and object id.
case(
    "ruby/exceptioner, template method",
    "ruby-order-template",
    exceptioner(
        "ActionView::Template::Error",
        "undefined local variable or method `current_user' for #<ActionView::Base>",
        [
            "[PROJECT_ROOT]/app/views/orders/show.html.erb:12:in "
            "`_app_views_orders_show_html_erb___2147045113548236017_70124532512340'",
            "[GEM_ROOT]/gems/actionview-6.0.3/lib/action_view/template.rb:159:in `block in render'",
            *RAILS_6,
        ],
    ),
)
case(
    "ruby/exceptioner, template method after restart",
    "ruby-order-template",
    exceptioner(
        "ActionView::Template::Error",
        "undefined local variable or method `current_user' for #<ActionView::Base>",
        [
            "[PROJECT_ROOT]/app/views/orders/show.html.erb:14:in "
            "`_app_views_orders_show_html_erb__-1735262373094875421_47093625190220'",
            "[GEM_ROOT]/gems/actionview-6.0.3/lib/action_view/template.rb:159:in `block in render'",
            *RAILS_6,
        ],
    ),
)

# Recursion: the depth at which the stack overflowed does not matter.
case(
    "ruby/exceptioner, stack level too deep x60",
    "ruby-category-recursion",
    exceptioner(
        "SystemStackError",
        "stack level too deep",
        ["[PROJECT_ROOT]/app/models/category.rb:12:in `ancestors'"] * 60
        + ["[PROJECT_ROOT]/app/controllers/categories_controller.rb:5:in `show'", *RAILS_6],
    ),
)
case(
    "ruby/exceptioner, stack level too deep x85, moved",
    "ruby-category-recursion",
    exceptioner(
        "SystemStackError",
        "stack level too deep",
        ["[PROJECT_ROOT]/app/models/category.rb:14:in `ancestors'"] * 85
        + ["[PROJECT_ROOT]/app/controllers/categories_controller.rb:5:in `show'", *RAILS_6],
    ),
)

# Only library frames: then they decide, whatever the gem version in their paths.
case(
    "ruby/exceptioner, library-only rack 2.0.1",
    "ruby-rack-bad-query",
    exceptioner(
        "Rack::QueryParser::InvalidParameterError",
        "invalid %-encoding (%E0%A4%A)",
        [
            "[GEM_ROOT]/gems/rack-2.0.1/lib/rack/query_parser.rb:72:in `rescue in parse_nested_query'",
            "[GEM_ROOT]/gems/rack-2.0.1/lib/rack/query_parser.rb:60:in `parse_nested_query'",
            "[GEM_ROOT]/gems/rack-2.0.1/lib/rack/request.rb:410:in `parse_query'",
            "[GEM_ROOT]/gems/rack-2.0.1/lib/rack/method_override.rb:22:in `call'",
        ],
    ),
)
case(
    "ruby/exceptioner, library-only rack 2.2.3",
    "ruby-rack-bad-query",
    exceptioner(
        "Rack::QueryParser::InvalidParameterError",
        "invalid %-encoding (%C3%28)",
        [
            "/usr/local/bundle/gems/rack-2.2.3/lib/rack/query_parser.rb:81:in `rescue in parse_nested_query'",
            "/usr/local/bundle/gems/rack-2.2.3/lib/rack/query_parser.rb:66:in `parse_nested_query'",
            "/usr/local/bundle/gems/rack-2.2.3/lib/rack/request.rb:471:in `parse_query'",
            "/usr/local/bundle/gems/rack-2.2.3/lib/rack/method_override.rb:24:in `call'",
        ],
    ),
)
case(
    "ruby/exceptioner, library-only puma parser error",
    "ruby-puma-http-parse",
    exceptioner(
        "Puma::HttpParserError",
        "Invalid HTTP format, parsing fails. Are you trying to open an SSL connection?",
        [
            "[GEM_ROOT]/gems/puma-5.6.5/lib/puma/client.rb:268:in `execute'",
            "[GEM_ROOT]/gems/puma-5.6.5/lib/puma/client.rb:268:in `try_to_finish'",
            "[GEM_ROOT]/gems/puma-5.6.5/lib/puma/server.rb:432:in `process_client'",
        ],
    ),
)

# No stack: the class and the message with its variable parts replaced.
case(
    "ruby/exceptioner, no backtrace, id 42",
    "ruby-user-not-found",
    exceptioner("ActiveRecord::RecordNotFound", "Couldn't find User with 'id'=42", []),
)
case(
    "ruby/exceptioner, no backtrace, id 1337",
    "ruby-user-not-found",
    exceptioner("ActiveRecord::RecordNotFound", "Couldn't find User with 'id'=1337", []),
)
case(
    "ruby/exceptioner, no backtrace, another model",
    "ruby-order-not-found",
    exceptioner("ActiveRecord::RecordNotFound", "Couldn't find Order with 'id'=42", []),
)

# =====================================================================================================
# Python (Sentry, pybrake, a Hoptoad-style client, Exceptionless @simple_error traceback string)
# =====================================================================================================

DJANGO = "/srv/shop/.venv/lib/python3.11/site-packages/django/core/handlers"


def django_frames(exception_line: int = 55, base_line: int = 197) -> list[dict[str, object]]:
    """Sentry frames (oldest first) for Django's request handling, as sentry-python marks them."""
    return [
        {
            "filename": "django/core/handlers/exception.py",
            "abs_path": f"{DJANGO}/exception.py",
            "module": "django.core.handlers.exception",
            "function": "inner",
            "lineno": exception_line,
            "in_app": False,
        },
        {
            "filename": "django/core/handlers/base.py",
            "abs_path": f"{DJANGO}/base.py",
            "module": "django.core.handlers.base",
            "function": "_get_response",
            "lineno": base_line,
            "in_app": False,
        },
    ]


def charge_frames(
    views_line: int = 41, billing_line: int = 88, qualified: bool = True
) -> list[dict[str, object]]:
    return [
        *django_frames(),
        {
            "filename": "shop/views.py",
            "abs_path": "/srv/shop/shop/views.py",
            "module": "shop.views",
            "function": "checkout",
            "lineno": views_line,
            "in_app": True,
            "context_line": "    receipt = billing.charge(order)",
        },
        {
            "filename": "shop/billing.py",
            "abs_path": "/srv/shop/shop/billing.py",
            "module": "shop.billing",
            "function": "BillingService.charge" if qualified else "charge",
            "lineno": billing_line,
            "in_app": True,
            "context_line": "    currency = payload['currency']",
        },
    ]


case(
    "python/sentry",
    "py-billing-charge",
    sentry([{"type": "KeyError", "value": "'currency'", "module": None, "frames": charge_frames()}]),
)
case(
    "python/sentry, lines moved, newer Django",
    "py-billing-charge",
    sentry(
        [
            {
                "type": "KeyError",
                "value": "'currency'",
                "frames": [*django_frames(58, 220), *charge_frames(44, 97, qualified=False)[2:]],
            }
        ]
    ),
)
case(
    "python/pybrake, /PROJECT_ROOT and /SITE_PACKAGES paths",
    "py-billing-charge",
    airbrake(
        [
            {
                "type": "KeyError",
                "message": "'currency'",
                "backtrace": [
                    {"file": "/PROJECT_ROOT/shop/billing.py", "function": "charge", "line": 88},
                    {"file": "/PROJECT_ROOT/shop/views.py", "function": "checkout", "line": 41},
                    {
                        "file": "/SITE_PACKAGES/django/core/handlers/base.py",
                        "function": "_get_response",
                        "line": 197,
                    },
                    {
                        "file": "/SITE_PACKAGES/django/core/handlers/exception.py",
                        "function": "inner",
                        "line": 55,
                    },
                ],
            }
        ]
    ),
)
case(
    "python/hoptoad-style client, traceback lines innermost first",
    "py-billing-charge",
    exceptioner(
        "KeyError",
        "'currency'",
        [
            '  File "/srv/shop/shop/billing.py", line 90, in charge',
            '  File "/srv/shop/shop/views.py", line 41, in checkout',
            '  File "/usr/local/lib/python3.11/site-packages/django/core/handlers/base.py", line 197, in _get_response',
            '  File "/usr/local/lib/python3.11/site-packages/django/core/handlers/exception.py", line 55, in inner',
        ],
    ),
)
case(
    "python/exceptionless @simple_error traceback string",
    "py-billing-charge",
    exceptionless_simple(
        "KeyError",
        "'currency'",
        """\
Traceback (most recent call last):
  File "/app/.venv/lib/python3.12/site-packages/django/core/handlers/exception.py", line 55, in inner
    response = get_response(request)
  File "/app/.venv/lib/python3.12/site-packages/django/core/handlers/base.py", line 197, in _get_response
    response = wrapped_callback(request, *callback_args, **callback_kwargs)
  File "/app/shop/views.py", line 41, in checkout
    receipt = billing.charge(order)
  File "/app/shop/billing.py", line 88, in charge
    currency = payload['currency']
               ~~~~~~~^^^^^^^^^^^^
KeyError: 'currency'
""",
    ),
)
case(
    "python/sentry, client fingerprint {{ default }} alone",
    "py-billing-charge",
    sentry(
        [{"type": "KeyError", "value": "'currency'", "frames": charge_frames(43, 90)}],
        fingerprint=["{{ default }}"],
    ),
)

# Sentry fingerprints: {{ default }} + a tenant splits the default group per tenant.
case(
    "python/sentry, fingerprint default+tenant-a",
    "py-billing-charge/tenant-a",
    sentry(
        [{"type": "KeyError", "value": "'currency'", "frames": charge_frames()}],
        fingerprint=["{{ default }}", "tenant-a"],
    ),
)
case(
    "python/sentry, fingerprint default+tenant-a, moved",
    "py-billing-charge/tenant-a",
    sentry(
        [{"type": "KeyError", "value": "'currency'", "frames": charge_frames(50, 99)}],
        fingerprint=["{{ default }}", "tenant-a"],
    ),
)
case(
    "python/sentry, fingerprint default+tenant-b",
    "py-billing-charge/tenant-b",
    sentry(
        [{"type": "KeyError", "value": "'currency'", "frames": charge_frames()}],
        fingerprint=["{{ default }}", "tenant-b"],
    ),
)
# A literal fingerprint puts unrelated errors together on purpose.
case(
    "python/sentry, literal fingerprint on a KeyError",
    "py-stripe-outage",
    sentry([{"type": "KeyError", "value": "'id'", "frames": charge_frames()}], fingerprint=["stripe-outage"]),
)
case(
    "python/sentry, literal fingerprint on a timeout",
    "py-stripe-outage",
    sentry(
        [
            {
                "type": "ReadTimeout",
                "value": "HTTPSConnectionPool(host='api.stripe.com', port=443): Read timed out.",
                "frames": charge_frames(41, 120),
            }
        ],
        fingerprint=["stripe-outage"],
    ),
)

# Same class and message, different app function.
case(
    "python/sentry, same KeyError in refund",
    "py-billing-refund",
    sentry(
        [
            {
                "type": "KeyError",
                "value": "'currency'",
                "frames": [
                    *django_frames(),
                    {
                        "filename": "shop/views.py",
                        "module": "shop.views",
                        "function": "refund_view",
                        "lineno": 77,
                        "in_app": True,
                    },
                    {
                        "filename": "shop/billing.py",
                        "module": "shop.billing",
                        "function": "BillingService.refund",
                        "lineno": 131,
                        "in_app": True,
                    },
                ],
            }
        ]
    ),
)
case(
    "python/pybrake, same KeyError in refund",
    "py-billing-refund",
    airbrake(
        [
            {
                "type": "KeyError",
                "message": "'currency'",
                "backtrace": [
                    {"file": "/PROJECT_ROOT/shop/billing.py", "function": "refund", "line": 133},
                    {"file": "/PROJECT_ROOT/shop/views.py", "function": "refund_view", "line": 77},
                    {
                        "file": "/SITE_PACKAGES/django/core/handlers/base.py",
                        "function": "_get_response",
                        "line": 197,
                    },
                ],
            }
        ]
    ),
)

# Django apps all have views.py with an index view: the directory tells them apart.
case(
    "python/sentry, blog/views.py index",
    "py-blog-index",
    sentry(
        [
            {
                "type": "DoesNotExist",
                "value": "Post matching query does not exist.",
                "frames": [
                    *django_frames(),
                    {
                        "filename": "blog/views.py",
                        "module": "blog.views",
                        "function": "index",
                        "lineno": 12,
                        "in_app": True,
                    },
                ],
            }
        ]
    ),
)
case(
    "python/sentry, shop/views.py index",
    "py-shop-index",
    sentry(
        [
            {
                "type": "DoesNotExist",
                "value": "Product matching query does not exist.",
                "frames": [
                    *django_frames(),
                    {
                        "filename": "shop/views.py",
                        "module": "shop.views",
                        "function": "index",
                        "lineno": 12,
                        "in_app": True,
                    },
                ],
            }
        ]
    ),
)


def payment_chain(
    cause: str, cause_value: str, cause_frames: list[dict[str, object]]
) -> list[dict[str, object]]:
    """Sentry exception.values, oldest first: the cause, then what the app raised from it."""
    app = [
        {
            "filename": "shop/views.py",
            "module": "shop.views",
            "function": "checkout",
            "lineno": 41,
            "in_app": True,
        },
        {
            "filename": "shop/payments.py",
            "module": "shop.payments",
            "function": "fetch_charge",
            "lineno": 30,
            "in_app": True,
        },
    ]
    return [
        {"type": cause, "value": cause_value, "frames": [app[1], *cause_frames]},
        {
            "type": "PaymentUnavailable",
            "value": "payment provider unreachable",
            "frames": [*django_frames(), *app],
        },
    ]


REQUESTS = "/srv/shop/.venv/lib/python3.11/site-packages/requests"
CONNECT_FRAMES = [
    {
        "filename": "requests/api.py",
        "abs_path": f"{REQUESTS}/api.py",
        "module": "requests.api",
        "function": "get",
        "lineno": 73,
        "in_app": False,
    },
    {
        "filename": "requests/adapters.py",
        "abs_path": f"{REQUESTS}/adapters.py",
        "module": "requests.adapters",
        "function": "send",
        "lineno": 519,
        "in_app": False,
    },
]
case(
    "python/sentry chain, cause ConnectionError",
    "py-payment-connection",
    sentry(
        payment_chain(
            "ConnectionError",
            "HTTPSConnectionPool(host='api.stripe.com', port=443): Max retries exceeded",
            CONNECT_FRAMES,
        )
    ),
)
case(
    "python/pybrake chain, cause ConnectionError",
    "py-payment-connection",
    airbrake(
        [
            {
                "type": "PaymentUnavailable",
                "message": "payment provider unreachable",
                "backtrace": [
                    {"file": "/PROJECT_ROOT/shop/payments.py", "function": "fetch_charge", "line": 32},
                    {"file": "/PROJECT_ROOT/shop/views.py", "function": "checkout", "line": 41},
                    {
                        "file": "/SITE_PACKAGES/django/core/handlers/base.py",
                        "function": "_get_response",
                        "line": 197,
                    },
                ],
            },
            {
                "type": "ConnectionError",
                "message": "HTTPSConnectionPool(host='api.stripe.com', port=443): Max retries",
                "backtrace": [
                    {"file": "/SITE_PACKAGES/requests/adapters.py", "function": "send", "line": 519},
                    {"file": "/SITE_PACKAGES/requests/api.py", "function": "get", "line": 73},
                    {"file": "/PROJECT_ROOT/shop/payments.py", "function": "fetch_charge", "line": 30},
                ],
            },
        ]
    ),
)
case(
    "python/sentry chain, cause ReadTimeout: the chain matters",
    "py-payment-timeout",
    sentry(
        payment_chain(
            "ReadTimeout",
            "HTTPSConnectionPool(host='api.stripe.com', port=443): Read timed out. (read timeout=10)",
            CONNECT_FRAMES,
        )
    ),
)

# Recursion depth varies with the data.
TREE = {"filename": "shop/tree.py", "module": "shop.tree", "function": "walk", "lineno": 9, "in_app": True}
TREE_VIEW = {
    "filename": "shop/views.py",
    "module": "shop.views",
    "function": "category_tree",
    "lineno": 60,
    "in_app": True,
}
case(
    "python/sentry, RecursionError depth 40",
    "py-tree-recursion",
    sentry(
        [
            {
                "type": "RecursionError",
                "value": "maximum recursion depth exceeded",
                "frames": [*django_frames(), TREE_VIEW, *[TREE] * 40],
            }
        ]
    ),
)
case(
    "python/sentry, RecursionError depth 55",
    "py-tree-recursion",
    sentry(
        [
            {
                "type": "RecursionError",
                "value": "maximum recursion depth exceeded while calling a Python object",
                "frames": [*django_frames(), TREE_VIEW, *[TREE] * 55],
            }
        ]
    ),
)
case(
    "python/pybrake, RecursionError depth 120",
    "py-tree-recursion",
    airbrake(
        [
            {
                "type": "RecursionError",
                "message": "maximum recursion depth exceeded",
                "backtrace": [
                    *[{"file": "/PROJECT_ROOT/shop/tree.py", "function": "walk", "line": 9}] * 120,
                    {"file": "/PROJECT_ROOT/shop/views.py", "function": "category_tree", "line": 60},
                ],
            }
        ]
    ),
)

# No stack at all (e.g. logged from a worker without the traceback).
case(
    "python/pybrake, no backtrace, 'abc'",
    "py-int-parse",
    airbrake(
        [{"type": "ValueError", "message": "invalid literal for int() with base 10: 'abc'", "backtrace": []}]
    ),
)
case(
    "python/pybrake, no backtrace, '12a'",
    "py-int-parse",
    airbrake(
        [{"type": "ValueError", "message": "invalid literal for int() with base 10: '12a'", "backtrace": []}]
    ),
)

# =====================================================================================================
# JavaScript: Node (Exceptionless, @airbrake/node, @sentry/node, V8 text) and browsers (minified)
# =====================================================================================================

case(
    "node/exceptionless structured frames",
    "node-cart-total",
    exceptionless(
        {
            "type": "TypeError",
            "message": "Cannot read properties of undefined (reading 'price')",
            "stack_trace": [
                {
                    "name": "computeTotal",
                    "declaring_type": "CartService",
                    "file_name": "/app/src/services/cart.js",
                    "line_number": 42,
                    "column": 31,
                },
                {
                    "name": "getCart",
                    "declaring_type": None,
                    "file_name": "/app/src/routes/cart.js",
                    "line_number": 18,
                    "column": 40,
                },
                {
                    "name": "handle",
                    "declaring_type": "Layer",
                    "file_name": "/app/node_modules/express/lib/router/layer.js",
                    "line_number": 95,
                    "column": 5,
                },
                {
                    "name": "next",
                    "declaring_type": None,
                    "file_name": "/app/node_modules/express/lib/router/route.js",
                    "line_number": 144,
                    "column": 13,
                },
                {
                    "name": "processTicksAndRejections",
                    "declaring_type": "process",
                    "file_name": "node:internal/process/task_queues",
                    "line_number": 95,
                    "column": 5,
                },
            ],
        }
    ),
)
case(
    "node/@airbrake/node",
    "node-cart-total",
    airbrake(
        [
            {
                "type": "TypeError",
                "message": "Cannot read properties of undefined (reading 'price')",
                "backtrace": [
                    {
                        "file": "/app/src/services/cart.js",
                        "function": "CartService.computeTotal",
                        "line": 42,
                        "column": 31,
                    },
                    {"file": "/app/src/routes/cart.js", "function": "getCart", "line": 18, "column": 40},
                    {
                        "file": "/app/node_modules/express/lib/router/layer.js",
                        "function": "Layer.handle [as handle_request]",
                        "line": 95,
                        "column": 5,
                    },
                    {
                        "file": "node:internal/process/task_queues",
                        "function": "process.processTicksAndRejections",
                        "line": 95,
                        "column": 5,
                    },
                ],
            }
        ]
    ),
)
case(
    "node/@sentry/node, other property in message",
    "node-cart-total",
    sentry(
        [
            {
                "type": "TypeError",
                "value": "Cannot read properties of undefined (reading 'qty')",
                "frames": [
                    {
                        "filename": "node:internal/process/task_queues",
                        "module": "task_queues",
                        "function": "process.processTicksAndRejections",
                        "lineno": 95,
                        "colno": 5,
                        "in_app": False,
                    },
                    {
                        "filename": "/app/node_modules/express/lib/router/layer.js",
                        "module": "express.lib.router:layer",
                        "function": "Layer.handle [as handle_request]",
                        "lineno": 95,
                        "colno": 5,
                        "in_app": False,
                    },
                    {
                        "filename": "/app/src/routes/cart.js",
                        "module": "src.routes:cart",
                        "function": "getCart",
                        "lineno": 18,
                        "colno": 40,
                        "in_app": True,
                    },
                    {
                        "filename": "/app/src/services/cart.js",
                        "module": "src.services:cart",
                        "function": "CartService.computeTotal",
                        "lineno": 43,
                        "colno": 29,
                        "in_app": True,
                    },
                ],
            }
        ]
    ),
)
case(
    "node/exceptionless @simple_error V8 text",
    "node-cart-total",
    exceptionless_simple(
        "TypeError",
        "Cannot read properties of undefined (reading 'price')",
        """\
TypeError: Cannot read properties of undefined (reading 'price')
    at CartService.computeTotal (/app/src/services/cart.js:44:31)
    at getCart (/app/src/routes/cart.js:18:40)
    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)
    at next (/app/node_modules/express/lib/router/route.js:149:13)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)
""",
    ),
)
case(
    "node/V8 text, async frames, pnpm store, subclass receiver",
    "node-cart-total",
    exceptionless_simple(
        "TypeError",
        "Cannot read properties of undefined (reading 'price')",
        """\
TypeError: Cannot read properties of undefined (reading 'price')
    at PromoCartService.computeTotal (/srv/app/src/services/cart.js:42:31)
    at async getCart (/srv/app/src/routes/cart.js:18:21)
    at async Layer.handle [as handle_request] \
(/srv/app/node_modules/.pnpm/express@5.0.1/node_modules/express/lib/router/layer.js:152:17)
""",
    ),
)
case(
    "node/@airbrake/node, same TypeError in applyDiscount",
    "node-cart-discount",
    airbrake(
        [
            {
                "type": "TypeError",
                "message": "Cannot read properties of undefined (reading 'price')",
                "backtrace": [
                    {
                        "file": "/app/src/services/cart.js",
                        "function": "CartService.applyDiscount",
                        "line": 77,
                        "column": 12,
                    },
                    {"file": "/app/src/routes/cart.js", "function": "getCart", "line": 19, "column": 22},
                    {
                        "file": "/app/node_modules/express/lib/router/layer.js",
                        "function": "Layer.handle [as handle_request]",
                        "line": 95,
                        "column": 5,
                    },
                ],
            }
        ]
    ),
)


def minified(
    host: str, main: str, vendor: str, columns: tuple[int, int], inner: str = "t"
) -> list[dict[str, object]]:
    """@sentry/browser frames (oldest first) in a minified bundle: line 1, only the column moves."""
    return [
        {
            "filename": f"{host}/static/js/{vendor}",
            "function": "Yi",
            "lineno": 2,
            "colno": 160012,
            "in_app": True,
        },
        {
            "filename": f"{host}/static/js/{vendor}",
            "function": "Xo",
            "lineno": 2,
            "colno": 150321,
            "in_app": True,
        },
        {
            "filename": f"{host}/static/js/{main}",
            "function": "e",
            "lineno": 1,
            "colno": columns[1],
            "in_app": True,
        },
        {
            "filename": f"{host}/static/js/{main}",
            "function": inner,
            "lineno": 1,
            "colno": columns[0],
            "in_app": True,
        },
    ]


case(
    "browser/sentry, minified",
    "browser-checkout-null",
    sentry(
        [
            {
                "type": "TypeError",
                "value": "Cannot read properties of null (reading 'value')",
                "frames": minified(
                    "https://shop.example.com",
                    "main.3f9a1c2d.chunk.js",
                    "vendors~main.8c1e2f3a.chunk.js",
                    (4521, 9876),
                ),
            }
        ]
    ),
)
case(
    "browser/sentry, minified, only the columns differ",
    "browser-checkout-null",
    sentry(
        [
            {
                "type": "TypeError",
                "value": "Cannot read properties of null (reading 'value')",
                "frames": minified(
                    "https://shop.example.com",
                    "main.3f9a1c2d.chunk.js",
                    "vendors~main.8c1e2f3a.chunk.js",
                    (4533, 9881),
                ),
            }
        ]
    ),
)
case(
    "browser/sentry, minified, after a deploy: new hash, CDN host, ?v=",
    "browser-checkout-null",
    sentry(
        [
            {
                "type": "TypeError",
                "value": "Cannot read properties of null (reading 'value')",
                "frames": minified(
                    "https://cdn.example.net",
                    "main.5d41402a.chunk.js?v=2",
                    "vendors~main.8c1e2f3a.chunk.js?v=2",
                    (4601, 9954),
                ),
            }
        ]
    ),
)
case(
    "browser/sentry, Safari's message for the same bug",
    "browser-checkout-null",
    sentry(
        [
            {
                "type": "TypeError",
                "value": "null is not an object (evaluating 'e.target.value')",
                "frames": minified(
                    "https://shop.example.com",
                    "main.3f9a1c2d.chunk.js",
                    "vendors~main.8c1e2f3a.chunk.js",
                    (4519, 9870),
                ),
            }
        ]
    ),
)
case(
    "browser/sentry, minified, another function: another bug",
    "browser-checkout-other",
    sentry(
        [
            {
                "type": "TypeError",
                "value": "Cannot read properties of null (reading 'value')",
                "frames": minified(
                    "https://shop.example.com",
                    "main.3f9a1c2d.chunk.js",
                    "vendors~main.8c1e2f3a.chunk.js",
                    (7702, 9876),
                    inner="n",
                ),
            }
        ]
    ),
)

case(
    "browser/sentry, Vite asset hash",
    "browser-settings-save",
    sentry(
        [
            {
                "type": "TypeError",
                "value": "Failed to fetch",
                "frames": [
                    {
                        "filename": "https://app.example.com/assets/index-C2VtaBTi.js",
                        "function": "onClick",
                        "lineno": 40,
                        "colno": 1201,
                        "in_app": True,
                    },
                    {
                        "filename": "https://app.example.com/assets/Settings-BxY7z_2a.js",
                        "function": "saveSettings",
                        "lineno": 12,
                        "colno": 88,
                        "in_app": True,
                    },
                ],
            }
        ]
    ),
)
case(
    "browser/sentry, Vite asset hash after a deploy",
    "browser-settings-save",
    sentry(
        [
            {
                "type": "TypeError",
                "value": "Failed to fetch",
                "frames": [
                    {
                        "filename": "https://app.example.com/assets/index-DiwrgTda.js",
                        "function": "onClick",
                        "lineno": 40,
                        "colno": 1187,
                        "in_app": True,
                    },
                    {
                        "filename": "https://app.example.com/assets/Settings-5LIQYJZI.js",
                        "function": "saveSettings",
                        "lineno": 12,
                        "colno": 91,
                        "in_app": True,
                    },
                ],
            }
        ]
    ),
)

# Only the runtime's frames: they decide (the Node version moves their lines).
case(
    "node/V8 text, ECONNREFUSED, library-only",
    "node-econnrefused",
    exceptionless_simple(
        "Error",
        "connect ECONNREFUSED 127.0.0.1:5432",
        """\
Error: connect ECONNREFUSED 127.0.0.1:5432
    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)
""",
    ),
)
case(
    "node/V8 text, ECONNREFUSED, other host and Node version",
    "node-econnrefused",
    exceptionless_simple(
        "Error",
        "connect ECONNREFUSED 10.0.0.7:5432",
        """\
Error: connect ECONNREFUSED 10.0.0.7:5432
    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1607:16)
""",
    ),
)

# Mutual recursion under V8's 10-frame limit: the window starts at a different point each time.
VISIT = "    at visitNode (/app/src/ast/walk.js:{}:10)"
CHILDREN = "    at visitChildren (/app/src/ast/walk.js:{}:21)"
case(
    "node/V8 text, stack overflow, window starts in visitNode",
    "node-ast-recursion",
    exceptionless_simple(
        "RangeError",
        "Maximum call stack size exceeded",
        "RangeError: Maximum call stack size exceeded\n"
        + "\n".join([VISIT.format(12), CHILDREN.format(30)] * 5)
        + "\n",
    ),
)
case(
    "node/V8 text, stack overflow, window starts in visitChildren",
    "node-ast-recursion",
    exceptionless_simple(
        "RangeError",
        "Maximum call stack size exceeded",
        "RangeError: Maximum call stack size exceeded\n"
        + "\n".join([CHILDREN.format(31), VISIT.format(12)] * 5)
        + "\n",
    ),
)

# Anonymous callbacks have no name; their file and the named frames around them still count.
case(
    "node/@airbrake/node, anonymous callback",
    "node-sync-callback",
    airbrake(
        [
            {
                "type": "TypeError",
                "message": "items.map is not a function",
                "backtrace": [
                    {"file": "/app/src/jobs/sync.js", "function": "", "line": 31, "column": 17},
                    {"file": "/app/src/jobs/sync.js", "function": "runSync", "line": 25, "column": 5},
                    {"file": "node:internal/timers", "function": "listOnTimeout", "line": 569, "column": 17},
                ],
            }
        ]
    ),
)
case(
    "node/V8 text, anonymous callback, moved",
    "node-sync-callback",
    exceptionless_simple(
        "TypeError",
        "items.map is not a function",
        """\
TypeError: items.map is not a function
    at /app/src/jobs/sync.js:34:17
    at runSync (/app/src/jobs/sync.js:27:5)
    at listOnTimeout (node:internal/timers:573:17)
    at process.processTimers (node:internal/timers:514:7)
""",
    ),
)

# =====================================================================================================
# .NET (Exceptionless structured frames and stack strings)
# =====================================================================================================

ASPNET_TAIL = """\
   at lambda_method5(Closure , Object )
   at Microsoft.AspNetCore.Mvc.Infrastructure.ActionMethodExecutor.AwaitableObjectResultExecutor.Execute(\
IActionResultTypeMapper mapper, ObjectMethodExecutor executor, Object controller, Object[] arguments)
   at Microsoft.AspNetCore.Mvc.Infrastructure.ControllerActionInvoker.<InvokeActionMethodAsync>g__Awaited|12_0(\
ControllerActionInvoker invoker, ValueTask`1 actionResultValueTask)
"""
case(
    ".NET/exceptionless structured, async state machines",
    "dotnet-place-order",
    exceptionless(
        {
            "type": "System.InvalidOperationException",
            "message": "Sequence contains no elements",
            "stack_trace": [
                {
                    "name": "ThrowNoElementsException",
                    "declaring_namespace": "System.Linq",
                    "declaring_type": "ThrowHelper",
                },
                {"name": "First", "declaring_namespace": "System.Linq", "declaring_type": "Enumerable"},
                {
                    "name": "MoveNext",
                    "declaring_namespace": "Shop.Services",
                    "declaring_type": "OrderService+<PlaceOrderAsync>d__5",
                    "file_name": "/src/Shop/Services/OrderService.cs",
                    "line_number": 57,
                },
                {
                    "name": "Start",
                    "declaring_namespace": "System.Runtime.CompilerServices",
                    "declaring_type": "AsyncMethodBuilderCore",
                },
                {
                    "name": "MoveNext",
                    "declaring_namespace": "Shop.Controllers",
                    "declaring_type": "OrdersController+<Create>d__3",
                    "file_name": "/src/Shop/Controllers/OrdersController.cs",
                    "line_number": 31,
                },
                {"name": "lambda_method5", "declaring_namespace": None, "declaring_type": None},
                {
                    "name": "Execute",
                    "declaring_namespace": "Microsoft.AspNetCore.Mvc.Infrastructure",
                    "declaring_type": "ActionMethodExecutor+AwaitableObjectResultExecutor",
                },
            ],
        }
    ),
)
case(
    ".NET/exceptionless stack string, .NET 6 resolves async frames",
    "dotnet-place-order",
    exceptionless_simple(
        "System.InvalidOperationException",
        "Sequence contains no elements",
        """\
System.InvalidOperationException: Sequence contains no elements
   at System.Linq.ThrowHelper.ThrowNoElementsException()
   at System.Linq.Enumerable.First[TSource](IEnumerable`1 source)
   at Shop.Services.OrderService.PlaceOrderAsync(Int32 customerId) in /src/Shop/Services/OrderService.cs:line 57
   at Shop.Controllers.OrdersController.Create(OrderRequest request) in \
/src/Shop/Controllers/OrdersController.cs:line 31
"""
        + ASPNET_TAIL,
    ),
)
case(
    ".NET/stack string, state machine renumbered, Windows build paths",
    "dotnet-place-order",
    exceptionless_simple(
        "System.InvalidOperationException",
        "Sequence contains no elements",
        """\
System.InvalidOperationException: Sequence contains no elements
   at System.Linq.Enumerable.First[TSource](IEnumerable`1 source)
   at Shop.Services.OrderService.<PlaceOrderAsync>d__7.MoveNext() in \
C:\\agent\\_work\\3\\s\\src\\Shop\\Services\\OrderService.cs:line 61
--- End of stack trace from previous location where exception was thrown ---
   at System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw()
   at System.Runtime.CompilerServices.TaskAwaiter.HandleNonSuccessAndDebuggerNotification(Task task)
   at Shop.Controllers.OrdersController.<Create>d__3.MoveNext() in \
C:\\agent\\_work\\3\\s\\src\\Shop\\Controllers\\OrdersController.cs:line 31
--- End of stack trace from previous location where exception was thrown ---
   at lambda_method12(Closure , Object )
""",
    ),
)

LAMBDA_TEXT = """\
System.NullReferenceException: Object reference not set to an instance of an object.
   at Shop.Services.PricingService.<>c__DisplayClass{cls}.<ApplyDiscounts>b__{n}(LineItem item) in \
/src/Shop/Services/PricingService.cs:line {line}
   at System.Linq.Enumerable.SelectListIterator`2.ToList()
   at Shop.Services.PricingService.ApplyDiscounts(Cart cart) in /src/Shop/Services/PricingService.cs:line 86
   at Shop.Controllers.CartController.Checkout(Int32 cartId) in /src/Shop/Controllers/CartController.cs:line 22
"""
case(
    ".NET/stack string, lambda in a closure class",
    "dotnet-apply-discounts",
    exceptionless_simple(
        "System.NullReferenceException",
        "Object reference not set to an instance of an object.",
        LAMBDA_TEXT.format(cls="5_0", n="0", line=88),
    ),
)
case(
    ".NET/stack string, lambda renumbered after an edit",
    "dotnet-apply-discounts",
    exceptionless_simple(
        "System.NullReferenceException",
        "Object reference not set to an instance of an object.",
        LAMBDA_TEXT.format(cls="7_0", n="1", line=93),
    ),
)
case(
    ".NET/exceptionless structured, nested closure type",
    "dotnet-apply-discounts",
    exceptionless(
        {
            "type": "System.NullReferenceException",
            "message": "Object reference not set to an instance of an object.",
            "stack_trace": [
                {
                    "name": "<ApplyDiscounts>b__0",
                    "declaring_namespace": "Shop.Services",
                    "declaring_type": "PricingService+<>c__DisplayClass5_0",
                    "file_name": "/src/Shop/Services/PricingService.cs",
                    "line_number": 88,
                },
                {
                    "name": "ToList",
                    "declaring_namespace": "System.Linq",
                    "declaring_type": "Enumerable+SelectListIterator`2",
                },
                {
                    "name": "ApplyDiscounts",
                    "declaring_namespace": "Shop.Services",
                    "declaring_type": "PricingService",
                    "file_name": "/src/Shop/Services/PricingService.cs",
                    "line_number": 86,
                },
                {
                    "name": "Checkout",
                    "declaring_namespace": "Shop.Controllers",
                    "declaring_type": "CartController",
                    "file_name": "/src/Shop/Controllers/CartController.cs",
                    "line_number": 22,
                },
            ],
        }
    ),
)
case(
    ".NET/stack string, same exception in Validate",
    "dotnet-validate-cart",
    exceptionless_simple(
        "System.NullReferenceException",
        "Object reference not set to an instance of an object.",
        """\
System.NullReferenceException: Object reference not set to an instance of an object.
   at Shop.Services.PricingService.Validate(Cart cart) in /src/Shop/Services/PricingService.cs:line 40
   at Shop.Controllers.CartController.Checkout(Int32 cartId) in /src/Shop/Controllers/CartController.cs:line 21
""",
    ),
)


def db_update(
    inner_type: str, inner_message: str, inner_frames: list[dict[str, object]]
) -> dict[str, object]:
    return {
        "type": "Microsoft.EntityFrameworkCore.DbUpdateException",
        "message": "An error occurred while saving the entity changes. See the inner exception for details.",
        "stack_trace": [
            {
                "name": "MoveNext",
                "declaring_namespace": "Microsoft.EntityFrameworkCore.Update",
                "declaring_type": "ReaderModificationCommandBatch+<ExecuteAsync>d__50",
            },
            {
                "name": "MoveNext",
                "declaring_namespace": "Shop.Data",
                "declaring_type": "UserRepository+<SaveAsync>d__4",
                "file_name": "/src/Shop/Data/UserRepository.cs",
                "line_number": 33,
            },
        ],
        "inner": {"type": inner_type, "message": inner_message, "stack_trace": inner_frames},
    }


NPGSQL: list[dict[str, object]] = [
    {
        "name": "MoveNext",
        "declaring_namespace": "Npgsql",
        "declaring_type": "NpgsqlConnector+<ReadMessageLong>d__233",
    }
]
case(
    ".NET/exceptionless inner exception, unique violation",
    "dotnet-save-user-duplicate",
    exceptionless(
        db_update(
            "Npgsql.PostgresException",
            '23505: duplicate key value violates unique constraint "ix_users_email"',
            NPGSQL,
        )
    ),
)
case(
    ".NET/exceptionless inner exception, unique violation again",
    "dotnet-save-user-duplicate",
    exceptionless(
        db_update(
            "Npgsql.PostgresException",
            '23505: duplicate key value violates unique constraint "ix_users_name"',
            NPGSQL,
        )
    ),
)
case(
    ".NET/exceptionless inner exception, timeout: another cause",
    "dotnet-save-user-timeout",
    exceptionless(db_update("System.TimeoutException", "Timeout during reading attempt", NPGSQL)),
)

# =====================================================================================================
# Java (Sentry Java, javabrake, a stack string)
# =====================================================================================================

SPRING_OUTER = [  # Sentry frames, oldest first
    {
        "module": "java.lang.Thread",
        "function": "run",
        "filename": "Thread.java",
        "lineno": 833,
        "in_app": False,
    },
    {
        "module": "org.apache.catalina.core.StandardWrapperValve",
        "function": "invoke",
        "filename": "StandardWrapperValve.java",
        "lineno": 197,
        "in_app": False,
    },
    {
        "module": "org.springframework.web.servlet.FrameworkServlet",
        "function": "service",
        "filename": "FrameworkServlet.java",
        "lineno": 883,
        "in_app": False,
    },
]


def spring_service(
    controller: str,
    service: str,
    method: str,
    leaf: tuple[str, str, int] | None,
    enhancer: str = "$$EnhancerBySpringCGLIB$$a1b2c3d4",
    fastclass: str = "$$FastClassBySpringCGLIB$$e5f6a7b8",
    shift: int = 0,
) -> list[dict[str, object]]:
    """Sentry Java frames (oldest first) through a @Transactional CGLIB proxy."""
    frames = [
        *SPRING_OUTER,
        {
            "module": f"com.shop.web.{controller}",
            "function": "create",
            "filename": f"{controller}.java",
            "lineno": 41 + shift,
            "in_app": True,
        },
        {
            "module": f"com.shop.service.{service}{enhancer}",
            "function": method,
            "filename": "<generated>",
            "in_app": True,
        },
        {
            "module": "org.springframework.aop.framework.CglibAopProxy$DynamicAdvisedInterceptor",
            "function": "intercept",
            "filename": "CglibAopProxy.java",
            "lineno": 708,
            "in_app": False,
        },
        {
            "module": "org.springframework.transaction.interceptor.TransactionInterceptor",
            "function": "invoke",
            "filename": "TransactionInterceptor.java",
            "lineno": 119,
            "in_app": False,
        },
        {
            "module": f"com.shop.service.{service}{fastclass}",
            "function": "invoke",
            "filename": "<generated>",
            "in_app": True,
        },
        {
            "module": f"com.shop.service.{service}",
            "function": method,
            "filename": f"{service}.java",
            "lineno": 57 + shift,
            "in_app": True,
        },
    ]
    if leaf:
        frames.append(
            {
                "module": f"com.shop.service.{leaf[0]}",
                "function": leaf[1],
                "filename": f"{leaf[0]}.java",
                "lineno": leaf[2] + shift,
                "in_app": True,
            }
        )
    return frames


NPE = 'Cannot invoke "com.shop.Customer.getAddress()" because "customer" is null'
case(
    "java/sentry, NPE through a CGLIB proxy",
    "java-place-order-npe",
    sentry(
        [
            {
                "type": "NullPointerException",
                "module": "java.lang",
                "value": NPE,
                "frames": spring_service(
                    "OrderController", "OrderService", "placeOrder", ("ShippingCalculator", "quote", 23)
                ),
            }
        ]
    ),
)
case(
    "java/sentry, other proxy hashes (Spring 6), lines moved",
    "java-place-order-npe",
    sentry(
        [
            {
                "type": "NullPointerException",
                "module": "java.lang",
                "value": NPE,
                "frames": spring_service(
                    "OrderController",
                    "OrderService",
                    "placeOrder",
                    ("ShippingCalculator", "quote", 23),
                    enhancer="$$SpringCGLIB$$0",
                    fastclass="$$SpringCGLIB$$1",
                    shift=4,
                ),
            }
        ]
    ),
)
case(
    "java/javabrake, class resource paths and JDK class names",
    "java-place-order-npe",
    airbrake(
        [
            {
                "type": "java.lang.NullPointerException",
                "message": NPE,
                "backtrace": [
                    {
                        "file": "shop.jar!/com/shop/service/ShippingCalculator.class",
                        "function": "quote",
                        "line": 23,
                    },
                    {
                        "file": "shop.jar!/com/shop/service/OrderService.class",
                        "function": "placeOrder",
                        "line": 57,
                    },
                    {
                        "file": "com.shop.service.OrderService$$FastClassBySpringCGLIB$$e5f6a7b8",
                        "function": "invoke",
                        "line": -1,
                    },
                    {
                        "file": "spring-tx-5.3.27.jar!/org/springframework/transaction/interceptor/TransactionInterceptor.class",
                        "function": "invoke",
                        "line": 119,
                    },
                    {
                        "file": "spring-aop-5.3.27.jar!/org/springframework/aop/framework/"
                        "CglibAopProxy$DynamicAdvisedInterceptor.class",
                        "function": "intercept",
                        "line": 708,
                    },
                    {
                        "file": "com.shop.service.OrderService$$EnhancerBySpringCGLIB$$9f8e7d6c",
                        "function": "placeOrder",
                        "line": -1,
                    },
                    {
                        "file": "shop.jar!/com/shop/web/OrderController.class",
                        "function": "create",
                        "line": 41,
                    },
                    {
                        "file": "spring-webmvc-5.3.27.jar!/org/springframework/web/servlet/FrameworkServlet.class",
                        "function": "service",
                        "line": 883,
                    },
                    {"file": "java.lang.Thread", "function": "run", "line": 833},
                ],
            }
        ]
    ),
)
case(
    "java/stack string",
    "java-place-order-npe",
    exceptionless_simple(
        "java.lang.NullPointerException",
        NPE,
        """\
java.lang.NullPointerException: Cannot invoke "com.shop.Customer.getAddress()" because "customer" is null
\tat com.shop.service.ShippingCalculator.quote(ShippingCalculator.java:25)
\tat com.shop.service.OrderService.placeOrder(OrderService.java:57)
\tat com.shop.service.OrderService$$FastClassBySpringCGLIB$$e5f6a7b8.invoke(<generated>)
\tat org.springframework.cglib.proxy.MethodProxy.invoke(MethodProxy.java:218)
\tat org.springframework.transaction.interceptor.TransactionInterceptor.invoke(TransactionInterceptor.java:119)
\tat org.springframework.aop.framework.CglibAopProxy$DynamicAdvisedInterceptor.intercept(CglibAopProxy.java:708)
\tat com.shop.service.OrderService$$EnhancerBySpringCGLIB$$a1b2c3d4.placeOrder(<generated>)
\tat com.shop.web.OrderController.create(OrderController.java:41)
\tat java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)
\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:883)
\tat java.base/java.lang.Thread.run(Thread.java:833)
""",
    ),
)
# Identical library frames, different app frames: a different bug.
case(
    "java/sentry, NPE in InvoiceService through the same Spring frames",
    "java-issue-invoice-npe",
    sentry(
        [
            {
                "type": "NullPointerException",
                "module": "java.lang",
                "value": NPE,
                "frames": spring_service("InvoiceController", "InvoiceService", "issue", None),
            }
        ]
    ),
)


def stock_chain(cause: str, cause_module: str, cause_value: str, lines: int = 0) -> list[dict[str, object]]:
    """Sentry exception.values, oldest first: a driver exception and the app's wrapper."""
    app = [
        *SPRING_OUTER,
        {
            "module": "com.shop.web.CartController",
            "function": "checkout",
            "filename": "CartController.java",
            "lineno": 30 + lines,
            "in_app": True,
        },
        {
            "module": "com.shop.service.StockService",
            "function": "reserve",
            "filename": "StockService.java",
            "lineno": 64 + lines,
            "in_app": True,
        },
    ]
    driver = [
        {
            "module": "com.zaxxer.hikari.pool.ProxyPreparedStatement",
            "function": "executeUpdate",
            "filename": "ProxyPreparedStatement.java",
            "lineno": 61,
            "in_app": False,
        },
        {
            "module": "org.postgresql.jdbc.PgPreparedStatement",
            "function": "executeUpdate",
            "filename": "PgPreparedStatement.java",
            "lineno": 152,
            "in_app": False,
        },
    ]
    return [
        {"type": cause, "module": cause_module, "value": cause_value, "frames": [*app, *driver]},
        {
            "type": "IllegalStateException",
            "module": "java.lang",
            "value": "could not reserve stock",
            "frames": app,
        },
    ]


case(
    "java/sentry chain, caused by a deadlock",
    "java-reserve-stock-deadlock",
    sentry(
        stock_chain(
            "PSQLException",
            "org.postgresql.util",
            "ERROR: deadlock detected\n  Detail: Process 4242 waits for ShareLock",
        )
    ),
)
case(
    "java/sentry chain, caused by a deadlock, lines moved",
    "java-reserve-stock-deadlock",
    sentry(
        stock_chain(
            "PSQLException",
            "org.postgresql.util",
            "ERROR: deadlock detected\n  Detail: Process 77 waits for ShareLock",
            lines=3,
        )
    ),
)
case(
    "java/sentry chain, caused by a socket timeout: the chain matters",
    "java-reserve-stock-timeout",
    sentry(stock_chain("SocketTimeoutException", "java.net", "Read timed out")),
)

LAMBDA_JAVA = [  # Sentry frames, oldest first; the lambda ordinal and $$Lambda class vary
    {
        "module": "com.shop.importer.CsvImporter",
        "function": "importAll",
        "filename": "CsvImporter.java",
        "lineno": 40,
        "in_app": True,
    },
    {
        "module": "java.util.ArrayList",
        "function": "forEach",
        "filename": "ArrayList.java",
        "lineno": 1541,
        "in_app": False,
    },
]
case(
    "java/sentry, lambda$importAll$0",
    "java-csv-lambda",
    sentry(
        [
            {
                "type": "NumberFormatException",
                "module": "java.lang",
                "value": 'For input string: "12a"',
                "frames": [
                    *LAMBDA_JAVA,
                    {
                        "module": "com.shop.importer.CsvImporter$$Lambda$212/0x0000000800c4b440",
                        "function": "accept",
                        "in_app": True,
                    },
                    {
                        "module": "com.shop.importer.CsvImporter",
                        "function": "lambda$importAll$0",
                        "filename": "CsvImporter.java",
                        "lineno": 44,
                        "in_app": True,
                    },
                    {
                        "module": "java.lang.Integer",
                        "function": "parseInt",
                        "filename": "Integer.java",
                        "lineno": 668,
                        "in_app": False,
                    },
                ],
            }
        ]
    ),
)
case(
    "java/sentry, the same lambda renumbered lambda$importAll$1",
    "java-csv-lambda",
    sentry(
        [
            {
                "type": "NumberFormatException",
                "module": "java.lang",
                "value": 'For input string: "x"',
                "frames": [
                    *LAMBDA_JAVA,
                    {
                        "module": "com.shop.importer.CsvImporter$$Lambda/0x000001f00100a000",
                        "function": "accept",
                        "in_app": True,
                    },
                    {
                        "module": "com.shop.importer.CsvImporter",
                        "function": "lambda$importAll$1",
                        "filename": "CsvImporter.java",
                        "lineno": 47,
                        "in_app": True,
                    },
                    {
                        "module": "java.lang.Integer",
                        "function": "parseInt",
                        "filename": "Integer.java",
                        "lineno": 661,
                        "in_app": False,
                    },
                ],
            }
        ]
    ),
)

# =====================================================================================================
# Go (goroutine dumps as text, gobrake, sentry-go)
# =====================================================================================================

GO_PANIC = """\
panic: runtime error: index out of range [{index}] with length 3

goroutine {gid} [running]:
github.com/acme/shop/orders.(*Batcher).flush(0xc0001a2000, {{0xc0002b6000, 0x3, 0x4}})
\t{root}/orders/batcher.go:{line} +0x2c5
github.com/acme/shop/orders.(*Batcher).Run.func1()
\t{root}/orders/batcher.go:31 +0x8e
created by github.com/acme/shop/orders.(*Batcher).Run in goroutine 1
\t{root}/orders/batcher.go:28 +0x12a
{others}"""
GO_OTHERS_A = """
goroutine 1 [chan receive]:
main.main()
\t/build/shop/cmd/shopd/main.go:44 +0x3b1

goroutine 7 [select]:
github.com/acme/shop/worker.(*Pool).run(0xc000120000)
\t/build/shop/worker/pool.go:88 +0x1a5
created by github.com/acme/shop/worker.New in goroutine 1
\t/build/shop/worker/pool.go:40 +0x2d1
"""
GO_OTHERS_B = """
goroutine 1 [semacquire]:
sync.runtime_Semacquire(0xc00012a0a8?)
\t/usr/local/go/src/runtime/sema.go:62 +0x25
sync.(*WaitGroup).Wait(0xc00012a0a0)
\t/usr/local/go/src/sync/waitgroup.go:116 +0x48
main.main()
\t/home/runner/work/shop/shop/cmd/shopd/main.go:51 +0x3b1

goroutine 9 [IO wait]:
internal/poll.runtime_pollWait(0x7f0e5c3a1e28, 0x72)
\t/usr/local/go/src/runtime/netpoll.go:343 +0x85
net/http.(*conn).serve(0xc0001e8000, {0x9a6a58, 0xc0001c4000})
\t/usr/local/go/src/net/http/server.go:2009 +0x5f4
"""
case(
    "go/text dump, other goroutines idle",
    "go-batcher-index",
    exceptionless_simple(
        "runtime.boundsError",
        "runtime error: index out of range [5] with length 3",
        GO_PANIC.format(index=5, gid=42, root="/build/shop", line=57, others=GO_OTHERS_A),
    ),
)
case(
    "go/text dump, other goroutines busy, CI build path, moved",
    "go-batcher-index",
    exceptionless_simple(
        "runtime.boundsError",
        "runtime error: index out of range [7] with length 3",
        GO_PANIC.format(index=7, gid=17, root="/home/runner/work/shop/shop", line=61, others=GO_OTHERS_B),
    ),
)
case(
    "go/text dump, GOTRACEBACK=single",
    "go-batcher-index",
    exceptionless_simple(
        "runtime.boundsError",
        "runtime error: index out of range [4] with length 3",
        GO_PANIC.format(index=4, gid=88, root="/build/shop", line=57, others=""),
    ),
)
case(
    "go/text dump, nil pointer in another function",
    "go-user-store-nil",
    exceptionless_simple(
        "runtime.Error",
        "runtime error: invalid memory address or nil pointer dereference",
        """\
panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x18 pc=0x6b2d4a]

goroutine 23 [running]:
github.com/acme/shop/users.(*Store).Get(0x0, {0xc00001e0c0, 0x24})
\t/build/shop/users/store.go:61 +0x2a
github.com/acme/shop/orders.(*Batcher).flush(0xc0001a2000, {0xc0002b6000, 0x3, 0x4})
\t/build/shop/orders/batcher.go:52 +0x1c5
github.com/acme/shop/orders.(*Batcher).Run.func1()
\t/build/shop/orders/batcher.go:31 +0x8e
created by github.com/acme/shop/orders.(*Batcher).Run in goroutine 1
\t/build/shop/orders/batcher.go:28 +0x12a
""",
    ),
)

GO_HTTP_OLDEST_FIRST = [
    {
        "module": "net/http",
        "function": "(*conn).serve",
        "abs_path": "/usr/local/go/src/net/http/server.go",
        "lineno": 2009,
        "in_app": False,
    },
    {
        "module": "github.com/go-chi/chi/v5",
        "function": "(*Mux).routeHTTP",
        "abs_path": "/root/go/pkg/mod/github.com/go-chi/chi/v5@v5.0.8/mux.go",
        "lineno": 444,
        "in_app": False,
    },
    {
        "module": "net/http",
        "function": "HandlerFunc.ServeHTTP",
        "abs_path": "/usr/local/go/src/net/http/server.go",
        "lineno": 2136,
        "in_app": False,
    },
]
case(
    "go/gobrake, pkg/errors stack",
    "go-reserve-stock",
    airbrake(
        [
            {
                "type": "*errors.fundamental",
                "message": "insufficient stock for sku ABC-123",
                "backtrace": [
                    {"file": "/build/shop/orders/service.go", "function": "(*Service).Reserve", "line": 88},
                    {"file": "/build/shop/api/orders.go", "function": "(*Server).createOrder", "line": 41},
                    {
                        "file": "/usr/local/go/src/net/http/server.go",
                        "function": "HandlerFunc.ServeHTTP",
                        "line": 2136,
                    },
                    {
                        "file": "/root/go/pkg/mod/github.com/go-chi/chi/v5@v5.0.8/mux.go",
                        "function": "(*Mux).routeHTTP",
                        "line": 444,
                    },
                    {
                        "file": "/usr/local/go/src/net/http/server.go",
                        "function": "(*conn).serve",
                        "line": 2009,
                    },
                ],
            }
        ]
    ),
)
case(
    "go/gobrake, chi upgraded, lines moved",
    "go-reserve-stock",
    airbrake(
        [
            {
                "type": "*errors.fundamental",
                "message": "insufficient stock for sku XYZ-9",
                "backtrace": [
                    {"file": "/build/shop/orders/service.go", "function": "(*Service).Reserve", "line": 93},
                    {"file": "/build/shop/api/orders.go", "function": "(*Server).createOrder", "line": 41},
                    {
                        "file": "/usr/local/go/src/net/http/server.go",
                        "function": "HandlerFunc.ServeHTTP",
                        "line": 2166,
                    },
                    {
                        "file": "/root/go/pkg/mod/github.com/go-chi/chi/v5@v5.0.12/mux.go",
                        "function": "(*Mux).routeHTTP",
                        "line": 443,
                    },
                ],
            }
        ]
    ),
)
case(
    "go/sentry-go, same error",
    "go-reserve-stock",
    sentry(
        [
            {
                "type": "*errors.fundamental",
                "value": "insufficient stock for sku ABC-123",
                "frames": [
                    *GO_HTTP_OLDEST_FIRST,
                    {
                        "module": "github.com/acme/shop/api",
                        "function": "(*Server).createOrder",
                        "abs_path": "/build/shop/api/orders.go",
                        "lineno": 41,
                        "in_app": True,
                    },
                    {
                        "module": "github.com/acme/shop/orders",
                        "function": "(*Service).Reserve",
                        "abs_path": "/build/shop/orders/service.go",
                        "lineno": 88,
                        "in_app": True,
                    },
                ],
            }
        ]
    ),
)
case(
    "go/gobrake, no stack, one replica",
    "go-dial-db",
    airbrake(
        [
            {
                "type": "*net.OpError",
                "message": "dial tcp 10.0.0.12:5432: connect: connection refused",
                "backtrace": [],
            }
        ]
    ),
)
case(
    "go/gobrake, no stack, another replica",
    "go-dial-db",
    airbrake(
        [
            {
                "type": "*net.OpError",
                "message": "dial tcp 10.0.0.13:5432: connect: connection refused",
                "backtrace": [],
            }
        ]
    ),
)

# =====================================================================================================
# PHP (exception text with its trace, phpbrake, Sentry PHP)
# =====================================================================================================

PHP_TRACE = """\
PHP Fatal error:  Uncaught TypeError: App\\Services\\InvoiceService::total(): Argument #1 ($items) must be of type \
array, null given, called in {root}/app/Http/Controllers/InvoiceController.php on line {call} and defined in \
{root}/app/Services/InvoiceService.php:{line}
Stack trace:
#0 {root}/app/Http/Controllers/InvoiceController.php({call}): App\\Services\\InvoiceService->total(NULL)
#1 {root}/vendor/laravel/framework/src/Illuminate/Routing/Controller.php(54): \
App\\Http\\Controllers\\InvoiceController->show(Object(Illuminate\\Http\\Request), '{invoice}')
#2 {root}/vendor/laravel/framework/src/Illuminate/Routing/ControllerDispatcher.php(43): \
Illuminate\\Routing\\Controller->callAction('show', Array)
#3 {root}/vendor/laravel/framework/src/Illuminate/Routing/Route.php(259): \
Illuminate\\Routing\\ControllerDispatcher->dispatch(Object(Illuminate\\Routing\\Route), \
Object(App\\Http\\Controllers\\InvoiceController), 'show')
#4 {root}/public/index.php(52): Illuminate\\Foundation\\Http\\Kernel->handle(Object(Illuminate\\Http\\Request))
#5 {{main}}
  thrown in {root}/app/Services/InvoiceService.php on line {line}
"""
case(
    "php/exception text",
    "php-invoice-total",
    exceptionless_simple(
        "TypeError",
        "App\\Services\\InvoiceService::total(): Argument #1 ($items) must be of type array, null given",
        PHP_TRACE.format(root="/var/www/html", call=42, line=17, invoice="1042"),
    ),
)
case(
    "php/exception text, release dir, lines moved",
    "php-invoice-total",
    exceptionless_simple(
        "TypeError",
        "App\\Services\\InvoiceService::total(): Argument #1 ($items) must be of type array, null given",
        PHP_TRACE.format(root="/var/www/releases/20240301120000", call=45, line=19, invoice="77"),
    ),
)
case(
    "php/phpbrake, function shifted onto the line that is in it",
    "php-invoice-total",
    airbrake(
        [
            {
                "type": "TypeError",
                "message": "App\\Services\\InvoiceService::total(): Argument #1 ($items) must be of type "
                "array, null given",
                "backtrace": [
                    {
                        "file": "/PROJECT_ROOT/app/Services/InvoiceService.php",
                        "line": 17,
                        "function": "App\\Services\\InvoiceService->total",
                    },
                    {
                        "file": "/PROJECT_ROOT/app/Http/Controllers/InvoiceController.php",
                        "line": 42,
                        "function": "App\\Http\\Controllers\\InvoiceController->show",
                    },
                    {
                        "file": "/PROJECT_ROOT/vendor/laravel/framework/src/Illuminate/Routing/Controller.php",
                        "line": 54,
                        "function": "Illuminate\\Routing\\Controller->callAction",
                    },
                    {"file": "/PROJECT_ROOT/public/index.php", "line": 52, "function": ""},
                ],
            }
        ]
    ),
)
case(
    "php/sentry",
    "php-invoice-total",
    sentry(
        [
            {
                "type": "TypeError",
                "value": "App\\Services\\InvoiceService::total(): Argument #1 ($items) must be of type "
                "array, null given",
                "frames": [
                    {
                        "filename": "/public/index.php",
                        "abs_path": "/var/www/html/public/index.php",
                        "lineno": 52,
                        "in_app": True,
                    },
                    {
                        "filename": "/vendor/laravel/framework/src/Illuminate/Routing/Controller.php",
                        "lineno": 54,
                        "function": "Illuminate\\Routing\\Controller::callAction",
                        "in_app": False,
                    },
                    {
                        "filename": "/app/Http/Controllers/InvoiceController.php",
                        "lineno": 42,
                        "function": "App\\Http\\Controllers\\InvoiceController::show",
                        "in_app": True,
                    },
                    {
                        "filename": "/app/Services/InvoiceService.php",
                        "lineno": 17,
                        "function": "App\\Services\\InvoiceService::total",
                        "in_app": True,
                    },
                ],
            }
        ]
    ),
)
case(
    "php/phpbrake, TypeError in tax(): another bug",
    "php-invoice-tax",
    airbrake(
        [
            {
                "type": "TypeError",
                "message": "App\\Services\\InvoiceService::tax(): Return value must be of type float, "
                "null returned",
                "backtrace": [
                    {
                        "file": "/PROJECT_ROOT/app/Services/InvoiceService.php",
                        "line": 61,
                        "function": "App\\Services\\InvoiceService->tax",
                    },
                    {
                        "file": "/PROJECT_ROOT/app/Http/Controllers/InvoiceController.php",
                        "line": 43,
                        "function": "App\\Http\\Controllers\\InvoiceController->show",
                    },
                    {"file": "/PROJECT_ROOT/public/index.php", "line": 52, "function": ""},
                ],
            }
        ]
    ),
)
case(
    "php/phpbrake, PHP 8.4 closure names carry a line",
    "php-export-closure",
    airbrake(
        [
            {
                "type": "ErrorException",
                "message": 'Undefined array key "sku"',
                "backtrace": [
                    {
                        "file": "/PROJECT_ROOT/app/Exports/OrdersExport.php",
                        "line": 30,
                        "function": "App\\Exports\\{closure:/var/www/html/app/Exports/OrdersExport.php:28}",
                    },
                    {
                        "file": "/PROJECT_ROOT/app/Exports/OrdersExport.php",
                        "line": 27,
                        "function": "App\\Exports\\OrdersExport->rows",
                    },
                ],
            }
        ]
    ),
)
case(
    "php/phpbrake, closure moved",
    "php-export-closure",
    airbrake(
        [
            {
                "type": "ErrorException",
                "message": 'Undefined array key "sku"',
                "backtrace": [
                    {
                        "file": "/PROJECT_ROOT/app/Exports/OrdersExport.php",
                        "line": 34,
                        "function": "App\\Exports\\{closure:/var/www/html/app/Exports/OrdersExport.php:32}",
                    },
                    {
                        "file": "/PROJECT_ROOT/app/Exports/OrdersExport.php",
                        "line": 31,
                        "function": "App\\Exports\\OrdersExport->rows",
                    },
                ],
            }
        ]
    ),
)

# =====================================================================================================
# Messages without any stack: ids, e-mails, URLs, IPs, UUIDs, timestamps vary
# =====================================================================================================

case(
    "mail/exceptioner, no stack, one recipient",
    "mail-rejected",
    exceptioner(
        "Net::SMTPFatalError",
        "550 5.1.1 <bob@example.com>: Recipient address rejected at 2024-03-01 12:30:45 +0000",
        [],
    ),
)
case(
    "mail/exceptioner, no stack, another recipient and time",
    "mail-rejected",
    exceptioner(
        "Net::SMTPFatalError",
        "550 5.1.1 <alice.smith+shop@mail.example.org>: Recipient address rejected at "
        "2024-03-02 08:01:17 +0100",
        [],
    ),
)
case(
    "http/airbrake, no stack, URL and request id",
    "http-upstream-502",
    airbrake(
        [
            {
                "type": "UpstreamError",
                "message": "GET https://api.partner.example/v2/orders/8812?expand=items returned 502 "
                "(request 3f2504e0-4f89-11d3-9a0c-0305e82c3301, Tue, 14 Nov 2023 12:00:00 GMT)",
                "backtrace": [],
            }
        ]
    ),
)
case(
    "http/airbrake, no stack, other URL and request id",
    "http-upstream-502",
    airbrake(
        [
            {
                "type": "UpstreamError",
                "message": "GET https://api.partner.example/v2/orders/9?expand=items returned 502 "
                "(request 9b2d7c1e-0a3f-4e5b-8c6d-7e8f9a0b1c2d, Wed, 15 Nov 2023 09:13:02 GMT)",
                "backtrace": [],
            }
        ]
    ),
)
case(
    "http/airbrake, no stack, another status",
    "http-upstream-timeout",
    airbrake(
        [
            {
                "type": "UpstreamError",
                "message": "GET https://api.partner.example/v2/orders/8812 timed out after 30s",
                "backtrace": [],
            }
        ]
    ),
)

# =====================================================================================================
# Exceptionless manual stacking (@stack)
# =====================================================================================================

case(
    "exceptionless/@stack import-job on a TypeError",
    "manual-import-job",
    exceptionless(
        {
            "type": "TypeError",
            "message": "row.sku is undefined",
            "stack_trace": [
                {"name": "parseRow", "file_name": "/app/src/import.js", "line_number": 10, "column": 3}
            ],
        },
        stack={"title": "Import job failures", "signature_data": {"ManualStackingKey": "import-job"}},
    ),
)
case(
    "exceptionless/@stack import-job on another error",
    "manual-import-job",
    exceptionless(
        {
            "type": "Error",
            "message": "ETIMEDOUT",
            "stack_trace": [
                {"name": "fetchFeed", "file_name": "/app/src/feed.js", "line_number": 50, "column": 9}
            ],
        },
        stack={"title": "Import job failures", "signature_data": {"ManualStackingKey": "import-job"}},
    ),
)
case(
    "exceptionless/same TypeError without @stack",
    "node-import-parse-row",
    exceptionless(
        {
            "type": "TypeError",
            "message": "row.sku is undefined",
            "stack_trace": [
                {"name": "parseRow", "file_name": "/app/src/import.js", "line_number": 12, "column": 3}
            ],
        }
    ),
)


# =====================================================================================================
# Hoptoad / Airbrake v2 XML (shared/protocols/hoptoad.py decodes these; nothing is mapped by hand)
# =====================================================================================================


def v2_xml(
    cls: str,
    message: str,
    lines: list[tuple[str, int, str]],
    root: str = "",
    notifier: str = "Airbrake Notifier",
) -> str:
    backtrace = "".join(f'<line number="{n}" file="{f}" method="{m}"/>' for f, n, m in lines)
    project_root = f"<project-root>{root}</project-root>" if root else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?><notice version="2.3"><api-key>k</api-key>'
        f"<notifier><name>{notifier}</name><version>3.1.6</version></notifier>"
        f"<error><class>{cls}</class><message>{cls}: {message}</message><backtrace>{backtrace}</backtrace></error>"
        f"<server-environment>{project_root}<environment-name>production</environment-name></server-environment>"
        "</notice>"
    )


def _gem_lines(lines: list[str]) -> list[tuple[str, int, str]]:
    """Exceptioner-style `file:line:in `method'` lines as v2 `<line>` attributes."""
    out = []
    for text in lines:
        file, number, rest = text.split(":", 2)
        out.append((file, int(number), rest.split("in ", 1)[1].strip("`'")))
    return out


case(
    "ruby/hoptoad v2 XML, airbrake gem 3.x, release dir as project-root",
    "ruby-user-full-name",
    hoptoad(
        v2_xml(
            "NoMethodError",
            "undefined method `upcase' for nil:NilClass",
            [
                ("/srv/shop/releases/20240301120000/app/models/user.rb", 42, "full_name"),
                ("/srv/shop/releases/20240301120000/app/controllers/users_controller.rb", 10, "show"),
                *_gem_lines(RAILS_6),
            ],
            root="/srv/shop/releases/20240301120000",
        )
    ),
)
case(
    "ruby/hoptoad v2 XML, hoptoad_notifier [PROJECT_ROOT] lines, lines moved",
    "ruby-user-full-name",
    hoptoad(
        v2_xml(
            "NoMethodError",
            "undefined method `upcase' for nil:NilClass",
            [
                ("[PROJECT_ROOT]/app/models/user.rb", 49, "full_name"),
                ("[PROJECT_ROOT]/app/controllers/users_controller.rb", 11, "show"),
                *_gem_lines(RAILS_7_LABELS),
            ],
            notifier="Hoptoad Notifier",
        )
    ),
)
case(
    "ruby/hoptoad v2 XML, Order#total (the same bug as the Exceptioner and CrashLog reports)",
    "ruby-order-total",
    hoptoad(
        v2_xml(
            "NoMethodError",
            "undefined method `upcase' for nil:NilClass",
            [
                ("[PROJECT_ROOT]/app/models/order.rb", 17, "total"),
                ("[PROJECT_ROOT]/app/controllers/orders_controller.rb", 8, "show"),
                *_gem_lines(RAILS_6),
            ],
        )
    ),
)
case(
    "python/hoptoad v2 XML, PyPI errbit client, oldest frame first",
    "py-billing-charge",
    hoptoad(
        v2_xml(
            "KeyError",
            "'currency'",
            [
                ("/usr/local/lib/python3.11/site-packages/django/core/handlers/exception.py", 55, "inner"),
                (
                    "/usr/local/lib/python3.11/site-packages/django/core/handlers/base.py",
                    197,
                    "_get_response",
                ),
                ("/srv/shop/shop/views.py", 41, "checkout"),
                ("/srv/shop/shop/billing.py", 90, "charge"),
            ],
            root="/srv/shop",
            notifier="errbit",
        )
    ),
)

"""After the public tests: the points they are worth, earned and possible."""


def pytest_terminal_summary(terminalreporter):
    earned = possible = 0.0
    for status in ("passed", "failed"):
        for report in terminalreporter.stats.get(status, []):
            properties = dict(getattr(report, "user_properties", []))
            if report.when == "call" and "possible" in properties:
                earned += properties["earned"]
                possible += properties["possible"]
    if possible:
        terminalreporter.write_sep("=", f"public tests: {earned:g} / {possible:g} points "
                                        f"(grading adds the tests shown after the due date)")

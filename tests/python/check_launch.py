#!/usr/bin/env python3
"""Checks that launch files are valid Python that uses only the launch / launch_ros APIs.

`ros2 launch` cannot be installed here (launch and launch_ros are not on PyPI), so this checks what
can be checked without them: the file compiles, imports only known names of those packages, and
defines generate_launch_description(). Prints a JSON summary; exits non-zero on a problem.
"""
import ast
import json
import sys

# The public names of launch / launch_ros (Jazzy) that launch files use.
KNOWN = {
    "launch": {"LaunchDescription", "LaunchContext", "Action", "Substitution"},
    "launch.actions": {"DeclareLaunchArgument", "ExecuteProcess", "IncludeLaunchDescription", "GroupAction",
                       "SetEnvironmentVariable", "TimerAction", "LogInfo", "OpaqueFunction", "RegisterEventHandler",
                       "Shutdown", "SetLaunchConfiguration"},
    "launch.conditions": {"IfCondition", "UnlessCondition", "LaunchConfigurationEquals"},
    "launch.substitutions": {"LaunchConfiguration", "PathJoinSubstitution", "PythonExpression", "TextSubstitution",
                             "EnvironmentVariable", "FindExecutable", "Command"},
    "launch.launch_description_sources": {"PythonLaunchDescriptionSource", "AnyLaunchDescriptionSource"},
    "launch_ros.actions": {"Node", "ComposableNodeContainer", "LoadComposableNodes", "PushRosNamespace", "SetParameter"},
    "launch_ros.substitutions": {"FindPackageShare"},
    "launch_ros.descriptions": {"ComposableNode", "ParameterFile"},
}

problems, summary = [], {}
for path in sys.argv[1:]:
    source = open(path).read()
    try:
        tree = ast.parse(source, filename=path)
        compile(tree, path, "exec")
    except SyntaxError as e:
        problems.append(f"{path}: {e}")
        continue
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            problems.append(f"{path}: plain import {[a.name for a in node.names]} (use from launch... import ...)")
        elif isinstance(node, ast.ImportFrom):
            if node.module not in KNOWN:
                problems.append(f"{path}: imports from {node.module}, which is not a launch/launch_ros module")
                continue
            for alias in node.names:
                if alias.name not in KNOWN[node.module]:
                    problems.append(f"{path}: {node.module}.{alias.name} is not a known launch API")
                imported.append(f"{node.module}.{alias.name}")
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    if "generate_launch_description" not in functions:
        problems.append(f"{path}: no generate_launch_description()")
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    summary[path] = {"imports": sorted(imported), "strings": strings}
print(json.dumps({"problems": problems, "files": summary}))
sys.exit(1 if problems else 0)

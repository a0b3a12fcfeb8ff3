"""The policy: the bundle, the engines that evaluate it and the decision they give
(`engines`), and the runner of the policy's own Rego unit tests (`testing`)."""

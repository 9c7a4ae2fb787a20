"""What every job process needs first: the job context, parameter rules, the step runner
and the errors a user can fix.
"""
